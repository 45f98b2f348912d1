"""The executor never loses the user's file: in-place edits are all or nothing under a
kill at any write or a full disk, a file changed under a phase is never overwritten, a
cut-short output is refused, tools die with VPO, and temporary files have names that
fit and are cleaned up only when nobody holds them.

Real tools on real files; faults come from the kernel (RLIMIT_FSIZE, SIGKILL at a
write that strace holds back), a second process, or a file swapped under VPO."""

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import tool_running
from vpo.executor.phase import PhaseExecutor, PhaseOutcome, VerificationError
from vpo.executor.process import Cancellation, RunInterrupted, ToolError, run_tool
from vpo.executor.safe_replace import TemporaryOutput, clean_stale_work, find_stale_work
from vpo.media import edit_journal
from vpo.media.identity import FileIdentity, SourceChanged
from vpo.media.probe import probe
from vpo.ownership import is_locked
from vpo.policy.loader import load_policy
from vpo.policy.planner import PhasePlan, plan
from vpo.samples import SampleFile

ROOT = Path(__file__).parents[2]
METADATA = """\
schema_version: 1
name: tags
config: {audio_languages: [jpn, eng]}
phases:
  - name: organize
    default_flags: {audio: preferred}
    set_language: [{track_type: audio, from: und, to: jpn}]
"""
REMUX = """\
schema_version: 1
name: remux
phases:
  - name: tidy
    filter_attachments: {remove_all: true}
    keep_audio: {languages: [eng, jpn], minimum: 1}
"""
TRANSCODE = """\
schema_version: 1
name: shrink
phases:
  - name: compress
    transcode: {video: {to: hevc, crf: 30, preset: ultrafast}}
"""
SLOW_TRANSCODE = TRANSCODE.replace("ultrafast", "medium")

# Runs the phases of a policy on a file the way the processor does, in its own process.
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from vpo.executor.phase import PhaseExecutor
    from vpo.media.probe import probe
    from vpo.policy.loader import load_policy
    from vpo.policy.planner import plan

    path, policy = Path(sys.argv[1]), load_policy(Path(sys.argv[2]))
    media = probe(path)
    current = {t.index: t.index for t in media.tracks}
    identity = None
    for phase in plan(media, policy).phases:
        outcome = PhaseExecutor().run(path, media, current, phase, identity=identity)
        outcome.settle()
        media, current, identity = outcome.media, outcome.current, outcome.identity
    print("done", flush=True)
    """
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _phases(path: Path, policy_text: str, tmp_path: Path) -> list[PhasePlan]:
    return list(plan(probe(path), load_policy(_policy(tmp_path, policy_text))).phases)


def _run_phase(
    path: Path,
    policy_text: str,
    tmp_path: Path,
    executor: PhaseExecutor | None = None,
    on_progress: Callable[[float], None] | None = None,
    identity: FileIdentity | None = None,
) -> PhaseOutcome:
    media = probe(path)
    identity = identity or FileIdentity.of(path)
    (phase,) = _phases(path, policy_text, tmp_path)
    current = {t.index: t.index for t in media.tracks}
    return (executor or PhaseExecutor()).run(
        path, media, current, phase, on_progress, identity=identity
    )


def _track_count(path: Path) -> int:
    out = subprocess.run(["mkvmerge", "-J", str(path)], capture_output=True, check=False)
    return len(json.loads(out.stdout).get("tracks", []))


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".vpo-" in p.name)


@pytest.fixture
def ffmpeg_mkv(tmp_path: Path, sample_files: list[SampleFile]) -> Path:
    """The multi-language sample remuxed by ffmpeg: no room after its track list, so a
    metadata edit must blank the old list and append a new one."""
    source = next(s.path for s in sample_files if s.path.name == "movie-h264-multilang.mkv")
    folder = tmp_path / "media"
    folder.mkdir()
    target = folder / "ffmpeg-muxed.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-map", "0", "-c", "copy", str(target)],
        check=True,
    )
    return target


@pytest.fixture
def long_mkv(tmp_path: Path) -> Path:
    """20 s of video and audio (for the duration check)."""
    target = tmp_path / "media" / "long.mkv"
    target.parent.mkdir(exist_ok=True)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=24:duration=20",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=20:sample_rate=48000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-shortest",
            str(target),
        ],
        check=True,
    )
    return target


# --- point 1: in-place edits are all or nothing ------------------------------------------------


def test_mkvpropedit_writes_only_where_the_journal_covers(
    tmp_path: Path, sample_files: list[SampleFile], ffmpeg_mkv: Path
) -> None:
    """The journal's premise, checked on every sample layout and on a file mkvpropedit
    already edited: every byte an edit changes within the old length is journaled."""
    files = [s.path for s in sample_files if s.path.suffix == ".mkv"] + [ffmpeg_mkv]
    edits = [
        ["--edit", "track:@2", "--set", "language=fre", "--set", "flag-default=0"],
        ["--edit", "track:@2", "--set", "name=" + "a much longer track name " * 8],
        ["--edit", "track:@1", "--set", "flag-forced=1", "--edit", "info", "--set", "title=T"],
    ]
    appended = 0
    for source in files:
        work = tmp_path / "cover" / source.name
        work.parent.mkdir(exist_ok=True)
        shutil.copy(source, work)
        for args in edits:
            before = work.read_bytes()
            regions = edit_journal.edit_regions(work)
            assert regions is not None, work.name
            subprocess.run(["mkvpropedit", str(work), *args], check=True, capture_output=True)
            after = work.read_bytes()
            appended += len(after) > len(before)
            changed = [i for i in range(len(before)) if before[i] != after[i]]
            outside = [i for i in changed if not any(s <= i < s + n for s, n in regions)]
            assert changed and outside == [], (work.name, args, outside[:5])
    assert appended >= 2  # the no-room case (new track list at the end) was exercised


def test_full_disk_during_an_in_place_edit_restores_the_original(ffmpeg_mkv: Path) -> None:
    original = _sha(ffmpeg_mkv)
    size = ffmpeg_mkv.stat().st_size

    def full_disk() -> None:  # the file may not grow: the appended track list fails
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write error, not a signal

    with pytest.raises(ToolError) as failure:
        _run_phase(ffmpeg_mkv, METADATA, ffmpeg_mkv.parent, PhaseExecutor(preexec_fn=full_disk))
    message = failure.value.message
    assert message.startswith("mkvpropedit failed (exit status 2)"), message
    assert message.endswith("; the original was restored byte for byte"), message
    assert _sha(ffmpeg_mkv) == original
    assert _track_count(ffmpeg_mkv) == 8
    assert _hidden(ffmpeg_mkv.parent) == []


def test_tool_killed_by_sigxfsz_mid_edit_restores_the_original(ffmpeg_mkv: Path) -> None:
    original = _sha(ffmpeg_mkv)
    size = ffmpeg_mkv.stat().st_size

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    with pytest.raises(ToolError, match=r"killed by SIGXFSZ.*restored byte for byte$"):
        _run_phase(ffmpeg_mkv, METADATA, ffmpeg_mkv.parent, PhaseExecutor(preexec_fn=limit))
    assert _sha(ffmpeg_mkv) == original
    assert _hidden(ffmpeg_mkv.parent) == []


def test_a_successful_edit_keeps_its_journal_until_settled(ffmpeg_mkv: Path) -> None:
    original = _sha(ffmpeg_mkv)
    outcome = _run_phase(ffmpeg_mkv, METADATA, ffmpeg_mkv.parent)
    edited = _sha(ffmpeg_mkv)
    assert edited != original and outcome.tool == "mkvpropedit"
    assert outcome.identity == FileIdentity.of(ffmpeg_mkv)
    assert outcome.journal is not None and is_locked(outcome.journal.path)
    assert find_stale_work(ffmpeg_mkv.parent) == []  # held: not stale
    outcome.settle()
    assert _hidden(ffmpeg_mkv.parent) == []
    assert _sha(ffmpeg_mkv) == edited


def _strace_wrapper(folder: Path, when: int | None, log: Path) -> dict[str, str]:
    """PATH with a `mkvpropedit` that runs the real one under strace, logging its
    writes and (with `when`) holding the `when`-th write back for 30 s."""
    folder.mkdir(exist_ok=True)
    inject = [f"-e inject=write:delay_enter=30s:when={when}"] if when else []
    wrapper = folder / "mkvpropedit"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec {shutil.which('strace')} -f -qq -e trace=write {' '.join(inject)} "
        f'-o {log} {shutil.which("mkvpropedit")} "$@"\n'
    )
    wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rfind(")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _held_in_write(pid: int) -> bool:
    """Is `pid` stopped by its tracer at the entry of a write (x86-64 syscall 1)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        call = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] == "t" and call[:1] == ["1"]


def _wait_for_held_write(vpo: subprocess.Popen[str], deadline: float) -> int:
    while time.monotonic() < deadline and vpo.poll() is None:
        for pid in _descendants(vpo.pid):
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm == "mkvpropedit" and _held_in_write(pid):
                time.sleep(0.3)  # a write that stays held: the injected delay
                if _held_in_write(pid):
                    return pid
        time.sleep(0.02)
    raise AssertionError("mkvpropedit never reached the write")


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="reads x86-64 syscall numbers")
def test_sigkill_at_each_write_of_an_in_place_edit(tmp_path: Path, ffmpeg_mkv: Path) -> None:
    """VPO and mkvpropedit are killed together (a power cut, `kill -9` of both groups)
    while mkvpropedit is at its N-th write; the next VPO finds the journal and the file
    is the original byte for byte (never a file without tracks)."""
    policy = _policy(tmp_path, METADATA)
    original = _sha(ffmpeg_mkv)
    pristine = tmp_path / "pristine.mkv"
    shutil.copy(ffmpeg_mkv, pristine)
    log = tmp_path / "writes.log"
    env = _strace_wrapper(tmp_path / "count", None, log)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(ffmpeg_mkv), str(policy)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "done"
    edited = _sha(ffmpeg_mkv)
    assert edited != original and ffmpeg_mkv.stat().st_size > pristine.stat().st_size
    writes = [line for line in log.read_text().splitlines() if " write(" in line]
    assert len(writes) >= 4, writes  # progress lines and several writes to the file
    left_broken = 0
    for when in range(1, len(writes) + 1):
        shutil.copy(pristine, ffmpeg_mkv)
        vpo = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(ffmpeg_mkv), str(policy)],
            env=_strace_wrapper(tmp_path / f"at-{when}", when, tmp_path / f"at-{when}.log"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        tool = _wait_for_held_write(vpo, time.monotonic() + 30)
        os.killpg(os.getpgid(tool), signal.SIGKILL)
        os.killpg(vpo.pid, signal.SIGKILL)
        vpo.communicate()
        left_broken += _sha(ffmpeg_mkv) not in (original, edited)
        stale = find_stale_work(ffmpeg_mkv.parent)
        assert [p.suffix for p in stale] == [".journal"], (when, stale)
        said = clean_stale_work(ffmpeg_mkv.parent)
        assert said == [
            "restored ffmpeg-muxed.mkv byte for byte from the journal of an interrupted edit"
        ]
        assert _sha(ffmpeg_mkv) in (original, edited), when
        assert _sha(ffmpeg_mkv) == original, when  # unrecorded: the edit is undone
        assert _hidden(ffmpeg_mkv.parent) == []
    assert left_broken >= 2  # the kills did land between the writes of the edit


def test_recover_undoes_an_edit_whose_process_died_before_settling(ffmpeg_mkv: Path) -> None:
    """An edit that finished but whose process died before settling (the run was not
    recorded) is undone by `recover`, which says so; with no journal it says nothing."""
    original = _sha(ffmpeg_mkv)
    outcome = _run_phase(ffmpeg_mkv, METADATA, ffmpeg_mkv.parent)
    assert outcome.journal is not None and outcome.journal.held is not None
    outcome.journal.held.release()  # the process ends without settling
    assert edit_journal.recover(ffmpeg_mkv) == (
        "restored ffmpeg-muxed.mkv byte for byte from the journal of an interrupted edit"
    )
    assert _sha(ffmpeg_mkv) == original
    assert edit_journal.recover(ffmpeg_mkv) is None


# --- point 2: a file changed during a phase is never overwritten ------------------------------


def _replace(path: Path) -> None:
    new = path.with_name("new.mkv")
    new.write_bytes(b"the user's new file " * 1000)
    new.replace(path)


def _rewrite(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(4096)
        handle.write(b"rewritten by the user" * 10)


def _append(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(b"appended by the user" * 10)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (_replace, "it was replaced by another file"),
        (_rewrite, "its content was rewritten"),
        (_append, "it grew from"),
    ],
)
def test_a_file_changed_during_a_transcode_is_kept(
    library: Path, tmp_path: Path, change: Callable[[Path], None], said: str
) -> None:
    movie = library / "silent-h264.mkv"
    seen: list[bool] = []

    def meanwhile(fraction: float) -> None:  # during ffmpeg's run, once
        if not seen:
            (temp,) = [p for p in library.iterdir() if ".vpo-" in p.name]
            seen.append(is_locked(temp))  # the temporary file is held while written
            change(movie)

    with pytest.raises(SourceChanged) as failure:
        _run_phase(movie, SLOW_TRANSCODE, tmp_path, on_progress=meanwhile)
    after = _sha(movie)
    assert seen == [True]
    assert failure.value.message.startswith(f"changed during processing: {said}")
    assert failure.value.message.endswith("the result was discarded and the file left as it is")
    assert _sha(movie) == after  # the user's new file, byte for byte
    assert _hidden(library) == []


def test_an_in_place_edit_refuses_a_file_changed_since_its_probe(ffmpeg_mkv: Path) -> None:
    identity = FileIdentity.of(ffmpeg_mkv)
    _append(ffmpeg_mkv)
    changed = _sha(ffmpeg_mkv)
    with pytest.raises(SourceChanged, match=r"^changed during processing: it grew"):
        _run_phase(ffmpeg_mkv, METADATA, ffmpeg_mkv.parent, identity=identity)
    assert _sha(ffmpeg_mkv) == changed
    assert _hidden(ffmpeg_mkv.parent) == []


def test_an_output_cut_short_is_refused(long_mkv: Path, tmp_path: Path) -> None:
    """A source damaged after its first 5 s (its header still says 20 s): ffmpeg exits 0
    with 5 s of output; the duration check refuses it."""
    data = bytearray(long_mkv.read_bytes())
    start, end = len(data) // 4, len(data) - 20_000
    data[start:end] = bytes(end - start)
    long_mkv.write_bytes(bytes(data))
    damaged = _sha(long_mkv)
    with pytest.raises(
        VerificationError, match=r"is cut short: it lasts [45]\.\d\d s, the source 20"
    ):
        _run_phase(long_mkv, TRANSCODE, tmp_path)
    assert _sha(long_mkv) == damaged
    assert _hidden(long_mkv.parent) == []


def test_removing_the_longest_track_is_not_a_cut(tmp_path: Path, long_mkv: Path) -> None:
    """A shorter output is right when the dropped track was the longer one."""
    short = tmp_path / "media" / "short-audio.mka"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=5",
            "-c:a",
            "aac",
            str(short),
        ],
        check=True,
    )
    mixed = tmp_path / "media" / "mixed.mkv"
    subprocess.run(
        [
            "mkvmerge",
            "-q",
            "-o",
            str(mixed),
            "--no-video",
            "--language",
            "1:jpn",
            str(long_mkv),
            "--language",
            "0:eng",
            str(short),
        ],
        check=True,
    )
    # Keep the 5 s English track only: no video, so the file lasts 5 s instead of 20 s.
    keep_english = (
        "schema_version: 1\nname: eng\nphases:\n  - name: a\n    keep_audio: {languages: [eng]}\n"
    )
    media = probe(mixed)
    assert media.duration_seconds and media.duration_seconds > 19
    (phase,) = _phases(mixed, keep_english, tmp_path)
    assert [a.action_type for a in phase.actions] == ["remove"]  # the 20 s Japanese track
    outcome = PhaseExecutor().run(mixed, media, {t.index: t.index for t in media.tracks}, phase)
    assert outcome.media.duration_seconds is not None and outcome.media.duration_seconds < 6


# --- point 4: tools never outlive VPO -------------------------------------------------------


LONG_FFMPEG = [
    "ffmpeg",
    "-nostdin",
    "-v",
    "error",
    "-re",
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=320x240:rate=24:duration=600",
    "-f",
    "null",
    "-",
]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


@pytest.mark.parametrize("tool", ["ffmpeg", "mkvmerge"])
def test_a_tool_dies_with_a_killed_vpo(tmp_path: Path, tool: str) -> None:
    if tool == "ffmpeg":
        args = LONG_FFMPEG
    else:  # mkvmerge waiting forever on a FIFO nobody writes to
        fifo = tmp_path / "input.mkv"
        os.mkfifo(fifo)
        args = ["mkvmerge", "-q", "-o", str(tmp_path / "out.mkv"), str(fifo)]
    code = (
        f"import sys\nfrom vpo.executor.process import run_tool\nrun_tool({args!r}, timeout=600)\n"
    )
    vpo = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    children: list[int] = []
    while not children and time.monotonic() < deadline:
        children = _descendants(vpo.pid)
        time.sleep(0.05)
    assert children, "the tool never started"
    time.sleep(0.3)
    os.kill(vpo.pid, signal.SIGKILL)  # VPO alone: its tool's group is not signalled
    vpo.wait()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in children if _alive(pid)] == []


def test_an_exception_raised_while_popen_waits_for_the_exec_stops_the_tool() -> None:
    """A signal handler's exception can come before `Popen` returns (here while the child
    runs its pre-exec code, which `Popen` waits for): the tool is stopped all the same, not
    left running on its own until it finishes."""
    marker = "41.7713"  # a duration no other test's `sleep` has

    def raise_it(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, raise_it)
    timer = threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            run_tool(["sleep", marker], timeout=60, preexec_fn=lambda: time.sleep(0.6))
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    time.sleep(1.0)  # past the moment the child would have run `sleep`
    assert tool_running("sleep", marker) == []


def test_cancellation_stops_a_running_tool(tmp_path: Path) -> None:
    cancellation = Cancellation()
    timer = threading.Timer(0.5, cancellation.cancel, args=("interrupted by SIGTERM",))
    timer.start()
    started = time.monotonic()
    with pytest.raises(RunInterrupted) as stopped:
        run_tool(LONG_FFMPEG, timeout=600, cancellation=cancellation)
    assert stopped.value.message == "interrupted by SIGTERM"
    assert time.monotonic() - started < 4
    with pytest.raises(RunInterrupted, match=r"^interrupted by SIGTERM$"):
        run_tool(["ffmpeg", "-version"], timeout=10, cancellation=cancellation)


def test_a_cancelled_transcode_leaves_no_temporary_file(library: Path, tmp_path: Path) -> None:
    movie = library / "silent-h264.mkv"
    original = _sha(movie)
    cancellation = Cancellation()
    with pytest.raises(RunInterrupted, match=r"^interrupted by SIGINT$"):
        _run_phase(
            movie,
            SLOW_TRANSCODE,
            tmp_path,
            PhaseExecutor(cancellation=cancellation),
            on_progress=lambda _: cancellation.cancel("interrupted by SIGINT"),
        )
    assert _sha(movie) == original
    assert _hidden(library) == []


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="reads x86-64 syscall numbers")
def test_a_cancelled_in_place_edit_is_undone(
    tmp_path: Path, ffmpeg_mkv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM (the cancellation) while mkvpropedit is between its writes: it is stopped
    and the file restored, and the error says both."""
    original = _sha(ffmpeg_mkv)
    env = _strace_wrapper(tmp_path / "held", 5, tmp_path / "held.log")
    monkeypatch.setenv("PATH", env["PATH"])
    cancellation = Cancellation(grace=1)
    failures: list[BaseException] = []

    def edit() -> None:
        try:
            _run_phase(ffmpeg_mkv, METADATA, tmp_path, PhaseExecutor(cancellation=cancellation))
        except BaseException as exc:  # handed to the test thread
            failures.append(exc)

    worker = threading.Thread(target=edit)
    worker.start()
    deadline = time.monotonic() + 30
    held = False
    while not held and time.monotonic() < deadline:
        held = any(
            _held_in_write(pid) and Path(f"/proc/{pid}/comm").read_text().strip() == "mkvpropedit"
            for pid in _descendants(os.getpid())
        )
        time.sleep(0.05)
    assert held, "mkvpropedit never reached its fifth write"
    time.sleep(0.3)
    cancellation.cancel("interrupted by SIGTERM")
    worker.join(30)
    (failure,) = failures
    assert isinstance(failure, RunInterrupted)
    assert failure.message == ("interrupted by SIGTERM; the original was restored byte for byte")
    assert _sha(ffmpeg_mkv) == original
    assert _hidden(ffmpeg_mkv.parent) == []


# --- point 5: temporary names and stale work -------------------------------------------------


@pytest.mark.parametrize(
    "stem",
    ["x" * 236, "é" * 125, os.fsdecode(b"caf\xe9-" + b"y" * 244)],
    ids=["240 ascii", "multibyte", "not utf-8"],
)
def test_a_long_name_is_remuxed(library: Path, tmp_path: Path, stem: str) -> None:
    movie = library / f"{stem}.mkv"
    assert len(os.fsencode(movie.name)) >= 240
    shutil.copy(library / "movie-h264-multilang.mkv", movie)
    temp = TemporaryOutput(movie)
    name = os.fsencode(temp.path.name)
    assert len(name) <= 255 and is_locked(temp.path)
    if stem.startswith("é"):
        assert name.decode("utf-8").startswith(".éé")  # cut on a character boundary
    temp.discard()
    outcome = _run_phase(movie, REMUX, tmp_path)
    assert outcome.tool == "mkvmerge"
    assert _track_count(movie) < 8
    assert _hidden(library) == []


HOLDER = (
    "import os, sys, time\nfrom vpo.ownership import hold_lock\n"
    "held = hold_lock(sys.argv[1], create=False)\n"
    "print('held' if held else 'busy', os.getpid(), flush=True)\n"
    "time.sleep(600)\n"
)


def test_a_temporary_file_held_in_another_pid_namespace_is_kept(library: Path) -> None:
    movie = library / "clean-hevc.mkv"
    temp = TemporaryOutput(movie)
    temp._held.release()  # as if its VPO were another process
    unshare = shutil.which("unshare")
    prefix = [unshare, "--pid", "--fork"] if unshare and os.geteuid() == 0 else []
    holder = subprocess.Popen(
        [*prefix, sys.executable, "-c", HOLDER, str(temp.path)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        said, pid = holder.stdout.readline().split()
        assert said == "held" and (pid == "1" or not prefix)  # PID 1 of its own namespace
        assert find_stale_work(library) == []
        assert clean_stale_work(library) == []
        assert temp.path.exists()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 10  # the namespace's process may die after unshare
    while is_locked(temp.path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert find_stale_work(library) == [temp.path]
    assert clean_stale_work(library) == [
        f"removed {temp.path.name} (0 bytes), left by an interrupted run"
    ]
    assert _hidden(library) == []
