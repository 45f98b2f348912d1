"""Serving the Prometheus exposition: a small HTTP server of its own for
`vpo process --metrics-port`, and the body + content type for `vpo serve`'s handler."""

import logging
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)


def render_metrics(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The exposition of `registry` in the format the scraper asked for, and its type."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def start_metrics_server(
    registry: CollectorRegistry, port: int, host: str = "127.0.0.1"
) -> tuple[WSGIServer, Thread]:
    """Serve `/metrics` on host:port in a daemon thread (loopback unless told otherwise);
    stop it with `server.shutdown()`."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("serving /metrics on http://%s:%d/metrics", host, server.server_port)
    return server, thread
