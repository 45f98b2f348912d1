"""The enqueuer's side of `vpo process --queue URL`: every file is scanned into the
library (the server's database, whose file ids the workers' runs must name), then sent
as one message, with a new trace whose id the worker's run carries."""

import secrets
from pathlib import Path

from vpo.media.identity import FileIdentity
from vpo.media.probe import ProbeError, probe
from vpo.queue.broker import declare, make_broker
from vpo.queue.message import FileMessage, policy_digest
from vpo.workflow.library_store import LibraryStore


def enqueue_files(
    db_path: Path, policy_path: str, roots: list[Path], files: list[Path], queue_url: str
) -> list[FileMessage]:
    """Scan `files` (found under `roots`) into `db_path` and enqueue one message each;
    return the messages sent."""
    policy_yaml = Path(policy_path).read_text(encoding="utf-8")
    digest = policy_digest(policy_yaml)
    broker = make_broker(queue_url)
    actor = declare(broker, _never_run_here)
    store = LibraryStore(db_path)
    sent = []
    try:
        for path in files:
            identity = FileIdentity.of(path)
            known = store.known(path)
            file_id = known.file_id if known is not None else _scan(store, path, identity)
            root = _root_of(path, roots)
            message = FileMessage(
                policy_yaml=policy_yaml,
                policy_digest=digest,
                root=str(root),
                relative_path=path.relative_to(root).as_posix(),
                file_id=file_id,
                size=identity.size,
                mtime_ns=identity.mtime_ns,
                partial_hash=identity.partial_hash,
                traceparent=f"00-{secrets.randbits(128):032x}-{secrets.randbits(64):016x}-01",
            )
            actor.send(message.to_dict())
            sent.append(message)
    finally:
        store.close()
        broker.close()
    return sent


def _scan(store: LibraryStore, path: Path, identity: FileIdentity) -> int:
    try:
        media = probe(path)
    except ProbeError as exc:  # queued anyway: the worker's run records the failure
        return store.save(path, None, identity.partial_hash, scan_error=exc.message)
    return store.save(path, media, identity.partial_hash)


def _root_of(path: Path, roots: list[Path]) -> Path:
    """The deepest root (a folder given on the command line) holding `path`; a file
    given itself is under its folder."""
    folders = [root if root.is_dir() else root.parent for root in map(Path.resolve, roots)]
    holding = [folder for folder in folders if path.is_relative_to(folder)]
    return max(holding, key=lambda folder: len(folder.parts)) if holding else path.parent


def _never_run_here(message: dict) -> None:  # the enqueuer only sends
    raise RuntimeError("process_file runs in `vpo worker`")
