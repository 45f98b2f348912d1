"""A run's link to its trace in Jaeger, Tempo or Grafana, from `VPO_TRACE_URL`: an
http(s) URL with `{trace_id}` where the run's 32-hex-digit trace id goes (docs/cli.md).
One definition for `vpo stats detail` and the dashboard; the id is only ever hex, so it
needs no quoting."""

import logging
import os
import re

log = logging.getLogger(__name__)

VARIABLE = "VPO_TRACE_URL"
PLACEHOLDER = "{trace_id}"
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def checked_template(value: str | None) -> str | None:
    """`value` if it is a usable link template (http(s), holding `{trace_id}`); otherwise
    None, with a warning saying why, so a typo does not make broken links."""
    value = (value or "").strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://")) or PLACEHOLDER not in value:
        log.warning(
            "%s is ignored: it must be an http(s) URL holding %s, such as "
            "http://localhost:16686/trace/%s.",
            VARIABLE,
            PLACEHOLDER,
            PLACEHOLDER,
        )
        return None
    return value


def trace_url_template() -> str | None:
    """The template `VPO_TRACE_URL` configures, or None."""
    return checked_template(os.environ.get(VARIABLE))


def trace_url(trace_id: str | None, template: str | None = None) -> str | None:
    """The link for one run (with `template`, else the configured one), or None without
    a template or a well-formed trace id."""
    template = template if template is not None else trace_url_template()
    if template is None or trace_id is None or not _TRACE_ID.fullmatch(trace_id):
        return None
    return template.replace(PLACEHOLDER, trace_id)
