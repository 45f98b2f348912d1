"""`vpo worker --metrics ADDRESS`: the worker's own Prometheus `/metrics` and `/healthz`,
served by a small HTTP server in a daemon thread (docs/workers.md, "Metrics").

The worker's runs are recorded in the SERVER's database, but its live instruments (files
processed, durations, bytes, …; docs/metrics.md) exist only in the worker's process, so
Prometheus scrapes each worker for them and tells workers apart by the scrape `instance`.
There is no library collector here: the `vpo_library_*` and `vpo_history_*` gauges
describe the server's database and come from `vpo serve` (served here too, a sum over
every target would count them once per worker).

Like `vpo serve`, the exposition is OpenMetrics with the runs' exemplars when the scraper
asks for it (`vpo.telemetry.exemplars`), else the classic text format.
"""

import gzip
import ipaddress
import json
import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry

from vpo.errors import InvalidInputError, VpoError
from vpo.telemetry.exemplars import ExemplarCollector, RunExemplars
from vpo.telemetry.instruments import DURATION_BUCKETS_S
from vpo.telemetry.serving import render_metrics

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PORT_HINT = 9322  # the port docs/workers.md and docker-compose.yml use (vpo serve is 8321)


def parse_address(text: str) -> tuple[str, int]:
    """`PORT` (loopback), `HOST:PORT` or `[IPv6]:PORT` as (host, port); port 0 picks a
    free one. An empty host is refused rather than guessed: exposing the metrics beyond
    the machine should be written out (`0.0.0.0:PORT`)."""
    text = text.strip()
    if text.isdigit():
        host, port_text = LOOPBACK, text
    elif text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise _bad(text)
        host, port_text = inside, rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _bad(text) from None
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or ":" in host:  # a bare IPv6 address needs its brackets
            raise _bad(text)
        if not host:
            raise InvalidInputError(
                f"--metrics {text!r} has no host: write 0.0.0.0:{port_text} for every "
                f"interface or 127.0.0.1:{port_text} for this machine only."
            )
    if not port_text.isdigit() or int(port_text) > 65535:
        raise _bad(text)
    return host, int(port_text)


def _bad(text: str) -> InvalidInputError:
    return InvalidInputError(
        f"--metrics {text!r} is not an address: expected PORT, HOST:PORT or [IPv6]:PORT "
        f"(e.g. 0.0.0.0:{PORT_HINT})."
    )


class MetricsServer:
    """The worker's `/metrics` (fed by `reader`, which the worker's MeterProvider must get,
    with `exemplars` for its RunMetrics) and `/healthz`. The port is taken at construction
    (a taken port fails before the worker starts anything); requests wait in the listen
    backlog until `start()`, called once the reader is on its MeterProvider (a reader
    collected before that answers nothing and logs a warning)."""

    def __init__(self, host: str, port: int) -> None:
        instruments = CollectorRegistry()
        # The MeterProvider's readers are fixed at its creation: the reader exists first.
        self.reader = PrometheusMetricReader(scope_info_enabled=False, registry=instruments)
        self.exemplars = RunExemplars(DURATION_BUCKETS_S)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(ExemplarCollector(instruments, self.exemplars))
        self._server = _bind(host, port, self.registry)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="vpo-worker-metrics", daemon=True
        )
        bound = self._server.server_address
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        self.url = f"http://{shown}:{bound[1]}"
        log.info("serving /metrics on %s/metrics", self.url)

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def serve_metrics(address: str) -> MetricsServer:
    """`MetricsServer` bound to `address` (parse_address), or one sentence: exit 2 for an
    address that does not parse, 1 for one that cannot be taken (in use, not this
    machine's, a name that does not resolve)."""
    host, port = parse_address(address)
    return MetricsServer(host, port)


def _bind(host: str, port: int, registry: CollectorRegistry) -> ThreadingHTTPServer:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (OSError, UnicodeError) as exc:
        raise VpoError(f"Cannot serve /metrics on {host}:{port}: {_reason(exc)}.") from exc

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

        def server_bind(self) -> None:
            # HTTPServer's own looks the address up in DNS (getfqdn), which can hang for
            # seconds in a container without DNS; the name is never used here.
            socketserver.TCPServer.server_bind(self)
            self.server_name = str(self.server_address[0])
            self.server_port = int(self.server_address[1])

    try:
        server = Server((host, port), _handler(registry))
    except OSError as exc:
        raise VpoError(f"Cannot serve /metrics on {host}:{port}: {_reason(exc)}.") from exc
    return server


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _handler(registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """GET /metrics and /healthz; nothing else. Quiet: the worker's log is its runs."""

        server_version = "vpo-worker"

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/metrics":
                try:
                    body, content_type = render_metrics(registry, self.headers.get("Accept"))
                except Exception:  # a bug in a collector: say so, keep serving
                    log.exception("collecting the worker's metrics failed")
                    self._send(500, b"collecting the metrics failed\n", "text/plain")
                    return
                self._send(200, body, content_type)
            elif path == "/healthz":
                self._send(200, json.dumps({"status": "ok"}).encode(), "application/json")
            else:
                self._send(404, b"not found: try /metrics or /healthz\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            accepted = self.headers.get("Accept-Encoding", "")
            gzipped = "gzip" in accepted and len(body) > 1024  # Prometheus asks for gzip
            if gzipped:
                body = gzip.compress(body, compresslevel=5)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if gzipped:
                self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics: " + format, *args)

    return Handler
