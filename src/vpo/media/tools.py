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
    """A program VPO runs, with the Debian package that provides it.

    `purpose` completes "needed to …" (`edit MKV flags`). A `tests_only` tool is never
    run by VPO itself, only by its test suite, so it is not required.
    """

    name: str
    package: str
    purpose: str
    version_flag: str
    version_pattern: str
    tests_only: bool = False

    @property
    def required(self) -> bool:
        return not self.tests_only

    @property
    def install_hint(self) -> str:
        return f"sudo apt-get install {self.package}"


TOOLS: dict[str, ExternalTool] = {
    tool.name: tool
    for tool in (
        ExternalTool(
            "ffprobe",
            "ffmpeg",
            "read tracks (scan, inspect)",
            "-version",
            r"ffprobe version (\S+)",
        ),
        ExternalTool(
            "ffmpeg",
            "ffmpeg",
            "transcode, remux non-MKV files and make samples",
            "-version",
            r"ffmpeg version (\S+)",
        ),
        ExternalTool(
            "mkvmerge",
            "mkvtoolnix",
            "remux MKV files and make samples",
            "--version",
            r"mkvmerge (v\S+)",
        ),
        ExternalTool(
            "mkvpropedit",
            "mkvtoolnix",
            "edit MKV flags and languages in place",
            "--version",
            r"mkvpropedit (v\S+)",
        ),
        ExternalTool(
            "promtool",
            "prometheus",
            "check the metrics exposition",
            "--version",
            r"promtool, version (\S+)",
            tests_only=True,
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
