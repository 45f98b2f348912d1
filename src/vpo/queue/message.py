"""One queue message: one file to process under one policy.

The message carries the policy's YAML text and its SHA-256 (the worker checks one
against the other), the file as the enqueuer saw it — its library root, its path below
that root, the server's file id, and what was probed (size, mtime in ns, partial hash) —
and the W3C `traceparent` that makes the worker's run part of the enqueuer's trace.
"""

import hashlib
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any

from vpo.errors import InvalidInputError, VpoError

VERSION = 1
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


class InvalidMessage(VpoError):
    """A message that cannot be run whatever the retry (refused, never retried)."""


def policy_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class FileMessage:
    policy_yaml: str
    policy_digest: str
    root: str  # the library root as the enqueuer sees it (absolute)
    relative_path: str  # below `root`, "/"-separated
    file_id: int  # the file's id in the server's library
    size: int
    mtime_ns: int
    partial_hash: str
    traceparent: str
    version: int = VERSION

    def __post_init__(self) -> None:
        problems = []
        for spec in fields(self):
            value = getattr(self, spec.name)
            wanted = int if spec.type in (int, "int") else str
            if not isinstance(value, wanted) or isinstance(value, bool):
                problems.append(f"{spec.name} must be {wanted.__name__}")
        if problems:
            raise InvalidMessage("invalid queue message: " + "; ".join(problems))
        relative = PurePosixPath(self.relative_path)
        if self.version != VERSION:
            problems.append(f"version {self.version} is not {VERSION}")
        if policy_digest(self.policy_yaml) != self.policy_digest:
            problems.append("the policy does not match its digest")
        if not PurePosixPath(self.root).is_absolute():
            problems.append("root must be absolute")
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            problems.append("relative_path must be a path below root")
        if self.file_id < 1 or self.size < 0 or self.mtime_ns < 0:
            problems.append("file_id, size and mtime_ns must be positive")
        if not TRACEPARENT.match(self.traceparent):
            problems.append("traceparent is not a W3C traceparent")
        if problems:
            raise InvalidMessage("invalid queue message: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Any) -> "FileMessage":
        if not isinstance(data, dict):
            raise InvalidMessage("invalid queue message: not an object")
        names = {spec.name for spec in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidMessage(f"invalid queue message: unknown fields {unknown}")
        try:
            return cls(**data)
        except TypeError as exc:  # a missing field
            raise InvalidMessage(f"invalid queue message: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def trace_id(self) -> str:
        return self.traceparent.split("-")[1]

    def local_path(self, path_map: "PathMap") -> Path:
        """The file on this machine: the root mapped, then the relative path."""
        return path_map.apply(self.root).joinpath(*PurePosixPath(self.relative_path).parts)


@dataclass(frozen=True)
class PathMap:
    """`--path-map SERVER=LOCAL` pairs: a root under SERVER is read under LOCAL."""

    pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, specs: tuple[str, ...] | list[str]) -> "PathMap":
        pairs = []
        for spec in specs:
            server, sep, local = spec.partition("=")
            if not sep or not server.startswith("/") or not local:
                raise InvalidInputError(
                    f"--path-map {spec!r}: expected SERVER=LOCAL, SERVER absolute."
                )
            pairs.append((server.rstrip("/") or "/", local))
        # The longest prefix first: /media/tv wins over /media.
        return cls(tuple(sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)))

    def apply(self, root: str) -> Path:
        for server, local in self.pairs:
            if root == server or root.startswith(server.rstrip("/") + "/"):
                rest = root[len(server) :].lstrip("/")
                return Path(local, rest) if rest else Path(local)
        return Path(root)
