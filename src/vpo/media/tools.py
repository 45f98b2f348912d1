"""Discovery of the external programs VPO drives, their versions and how to install them."""

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

from vpo.errors import ToolMissingError

VERSION_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class ExternalTool:
    """A program VPO runs, with the Debian package that provides it."""

    name: str
    package: str
    purpose: str
    version_flag: str
    version_pattern: str
    required: bool = True

    @property
    def install_hint(self) -> str:
        return f"sudo apt-get install {self.package}"


TOOLS: dict[str, ExternalTool] = {
    tool.name: tool
    for tool in (
        ExternalTool(
            "ffprobe",
            "ffmpeg",
            "reads tracks (scan, inspect)",
            "-version",
            r"ffprobe version (\S+)",
        ),
        ExternalTool(
            "ffmpeg",
            "ffmpeg",
            "transcodes, remuxes non-MKV files, makes samples",
            "-version",
            r"ffmpeg version (\S+)",
        ),
        ExternalTool(
            "mkvmerge",
            "mkvtoolnix",
            "remuxes MKV files, makes samples",
            "--version",
            r"mkvmerge (v\S+)",
        ),
        ExternalTool(
            "mkvpropedit",
            "mkvtoolnix",
            "edits MKV flags and languages in place",
            "--version",
            r"mkvpropedit (v\S+)",
        ),
        ExternalTool(
            "promtool",
            "prometheus",
            "checks the metrics exposition (tests only)",
            "--version",
            r"promtool, version (\S+)",
            required=False,
        ),
    )
}


@dataclass(frozen=True)
class ToolStatus:
    """What `vpo doctor` reports for one tool."""

    tool: ExternalTool
    path: str | None
    version: str | None

    @property
    def found(self) -> bool:
        return self.path is not None


def find_tool(name: str) -> str | None:
    """Absolute path of the program on PATH, or None."""
    return shutil.which(name)


def require_tool(name: str) -> str:
    """Absolute path of a tool VPO cannot work without; one clear sentence when missing."""
    path = find_tool(name)
    if path is None:
        tool = TOOLS[name]
        raise ToolMissingError(
            f"{name} is not installed; install the Debian package {tool.package} "
            f"({tool.install_hint})."
        )
    return path


@cache
def tool_version(name: str) -> str | None:
    """The version the tool reports, or None when it is missing or says nothing usable."""
    tool = TOOLS[name]
    path = find_tool(name)
    if path is None:
        return None
    try:
        result = subprocess.run(
            [path, tool.version_flag],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(tool.version_pattern, result.stdout + result.stderr)
    return match.group(1) if match else None


def check_tools() -> list[ToolStatus]:
    """Status of every known tool, in a stable order."""
    return [
        ToolStatus(tool, find_tool(tool.name), tool_version(tool.name)) for tool in TOOLS.values()
    ]
