"""The enqueuer's side of `vpo process --queue URL` and `vpo serve --watch … --queue URL`:
every file is scanned into the library (the server's database, whose file ids the
workers' runs must name), then sent as one message, with a new trace whose id the
worker's run carries — and by which the watch later finds that run."""

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vpo.media.identity import FileIdentity
from vpo.media.probe import ProbeError, probe
from vpo.queue.broker import QUEUE_NAME, declare, make_broker
from vpo.queue.message import FileMessage, policy_digest
from vpo.workflow.library_store import LibraryStore

# Where each waiting message of the given traces is: in the queue (waiting, delayed for a
# retry, or taken by a worker and not yet acknowledged: Dramatiq keeps its body in `.msgs`
# until then) or dead-lettered. Run in Redis, so that only trace ids cross the network.
_WHEREABOUTS = """
local wanted = {}
for _, trace in ipairs(ARGV) do wanted[trace] = true end
local found = {}
for i, key in ipairs(KEYS) do
  for _, body in ipairs(redis.call('HVALS', key)) do
    local trace = string.match(body, '"traceparent":%s*"00%-(%x+)%-')
    if trace and wanted[trace] then table.insert(found, trace .. ' ' .. i) end
  end
end
return found
"""


@dataclass(frozen=True)
class Whereabouts:
    """The traces (message trace ids) still in the queue, and those dead-lettered."""

    queued: frozenset[str]
    dead: frozenset[str]


class Enqueuer:
    """Scans files into `db_path` and sends one message each for one policy; the broker
    and the library stay open across calls, so a watch enqueues pass after pass without
    reconnecting. Raises VpoError at once when the Redis does not answer."""

    def __init__(self, db_path: Path, policy_yaml: str, queue_url: str) -> None:
        self.policy_yaml = policy_yaml
        self.digest = policy_digest(policy_yaml)
        self.broker = make_broker(queue_url)
        self.actor = declare(self.broker, _never_run_here)
        try:
            self.store = LibraryStore(db_path)
        except BaseException:
            self.broker.close()
            raise
        self._whereabouts = self.broker.client.register_script(_WHEREABOUTS)

    def enqueue(self, path: Path, roots: list[Path], *, rescan: bool = False) -> FileMessage:
        """Send `path` (found under `roots`) as one message; the file is scanned into the
        library first when unknown — or always with `rescan`, so the library shows the
        file as it was enqueued. Raises OSError/VpoError for a file that cannot be read
        (nothing sent) and redis' errors when the queue is away."""
        identity = FileIdentity.of(path)
        known = None if rescan else self.store.known(path)
        file_id = known.file_id if known is not None else self.scan(path, identity.partial_hash)
        root = _root_of(path, roots)
        message = FileMessage(
            policy_yaml=self.policy_yaml,
            policy_digest=self.digest,
            root=str(root),
            relative_path=path.relative_to(root).as_posix(),
            file_id=file_id,
            size=identity.size,
            mtime_ns=identity.mtime_ns,
            partial_hash=identity.partial_hash,
            traceparent=f"00-{secrets.randbits(128):032x}-{secrets.randbits(64):016x}-01",
        )
        self.actor.send(message.to_dict())
        return message

    def scan(self, path: Path, partial_hash: str) -> int:
        """Store `path` as it is now (probed, with its tracks); its file id."""
        try:
            media = probe(path)
        except ProbeError as exc:  # queued anyway: the worker's run records the failure
            return self.store.save(path, None, partial_hash, scan_error=exc.message)
        return self.store.save(path, media, partial_hash)

    def whereabouts(self, traces: Iterable[str]) -> Whereabouts:
        """Which of these messages (by trace id) Redis still holds, and where."""
        wanted = sorted(set(traces))
        if not wanted:
            return Whereabouts(frozenset(), frozenset())
        prefix = f"{self.broker.namespace}:{QUEUE_NAME}"
        keys = [f"{prefix}.msgs", f"{prefix}.DQ.msgs", f"{prefix}.XQ.msgs"]
        found = [item.decode().split() for item in self._whereabouts(keys=keys, args=wanted)]
        queued = frozenset(trace for trace, key in found if key != "3")
        return Whereabouts(queued, frozenset(trace for trace, key in found if key == "3") - queued)

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            self.broker.close()


def enqueue_files(
    db_path: Path, policy_path: str, roots: list[Path], files: list[Path], queue_url: str
) -> list[FileMessage]:
    """Scan `files` (found under `roots`) into `db_path` and enqueue one message each;
    return the messages sent."""
    enqueuer = Enqueuer(db_path, Path(policy_path).read_text(encoding="utf-8"), queue_url)
    try:
        return [enqueuer.enqueue(path, roots) for path in files]
    finally:
        enqueuer.close()


def _root_of(path: Path, roots: list[Path]) -> Path:
    """The deepest root (a folder given on the command line) holding `path`; a file
    given itself is under its folder."""
    folders = [root if root.is_dir() else root.parent for root in map(Path.resolve, roots)]
    holding = [folder for folder in folders if path.is_relative_to(folder)]
    return max(holding, key=lambda folder: len(folder.parts)) if holding else path.parent


def _never_run_here(message: dict) -> None:  # the enqueuer only sends
    raise RuntimeError("process_file runs in `vpo worker`")
