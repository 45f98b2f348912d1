"""A run's link to its trace in Jaeger, Tempo or Grafana, from `VPO_TRACE_URL`: a URL
with `{trace_id}` where the run's 32-hex-digit trace id goes (docs/cli.md). Shown by
`vpo stats detail` and the dashboard; the id is only ever hex, so it needs no quoting."""

import os
import re

VARIABLE = "VPO_TRACE_URL"
PLACEHOLDER = "{trace_id}"
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def trace_url_template() -> str | None:
    """The configured template (the id appended when it has no placeholder), or None."""
    value = os.environ.get(VARIABLE, "").strip()
    if not value:
        return None
    return value if PLACEHOLDER in value else value + PLACEHOLDER


def trace_url(trace_id: str | None) -> str | None:
    """The link for one run, or None without a template or a well-formed trace id."""
    template = trace_url_template()
    if template is None or trace_id is None or not _TRACE_ID.fullmatch(trace_id):
        return None
    return template.replace(PLACEHOLDER, trace_id)
