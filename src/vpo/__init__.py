"""VPO — Video Policy Orchestrator.

Kept import-free on purpose: `vpo --help` must start fast, so heavy modules
(rich, pydantic, OpenTelemetry) are imported only by the commands that use them.
"""

__version__ = "0.1.0"
