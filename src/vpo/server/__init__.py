"""`vpo serve`'s HTTP side: the aiohttp application (JSON API, /healthz, /metrics)."""

from vpo.server.app import make_app

__all__ = ["make_app"]
