"""The tables of `vpo stats …` for people: human units, UTC times, no markup from data.

File paths, policy names and error messages are user data: they are always wrapped in
`Text`, never parsed as rich markup. Lists of runs fit the terminal (80 columns and
up): short ids, and paths on a line of their own, shortened from the middle.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from vpo.cli.output import (
    MISSING,
    human_duration,
    human_partial_hash,
    human_percent,
    human_size,
    human_state,
    human_time,
    short_id,
    shorten_path,
    stdout_console,
)
from vpo.db.aggregates import PolicyStats, StatsSummary
from vpo.db.history import RunItem
from vpo.db.workers import UNKNOWN_WORKER_LABEL, WorkerStats
from vpo.telemetry.trace_link import trace_url

_GAP = "  "


def _pairs(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, show_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows:
        table.add_row(Text(label), Text(value))
    return table


def _saved(saved: int, percent: float) -> str:
    return f"{human_size(saved)} ({percent:.1f}%)"


def _outcome_rows(
    *,
    runs: tuple[int, int, int, float],
    sizes: tuple[int, int, int],
    percent: float,
    removed: tuple[int, int, int],
    transcodes: tuple[int, int, int],
    times: tuple[float, float],
) -> list[tuple[str, str]]:
    """The lines a summary and a policy share: runs, sizes, removals, transcodes, time."""
    files, successful, failed, rate = runs
    before, after, saved = sizes
    audio, subtitles, attachments = removed
    transcoded, skipped, audio_transcoded = transcodes
    total_time, average_time = times
    return [
        (
            "Files processed",
            f"{files:,} ({successful:,} successful, {failed:,} failed; "
            f"{human_percent(rate)} success)",
        ),
        ("Size before", human_size(before)),
        ("Size after", human_size(after)),
        ("Saved", _saved(saved, percent)),
        (
            "Tracks removed",
            f"audio {audio:,} · subtitles {subtitles:,} · attachments {attachments:,}",
        ),
        ("Videos", f"{transcoded:,} transcoded · {skipped:,} skipped"),
        ("Audio tracks transcoded", f"{audio_transcoded:,}"),
        (
            "Processing time",
            f"{human_duration(total_time)} total · {human_duration(average_time)} per file",
        ),
    ]


def print_summary(summary: StatsSummary) -> None:
    console = stdout_console()
    since = human_time(summary.since, seconds=True)
    until = human_time(summary.until, seconds=True)
    if summary.since and summary.until:
        window = f"{since} → {until} UTC"
    elif summary.since:
        window = f"since {since} UTC"
    elif summary.until:
        window = f"before {until} UTC"
    else:
        window = "all time"
    s = summary
    rows = _outcome_rows(
        runs=(s.total_files_processed, s.total_successful, s.total_failed, s.success_rate),
        sizes=(s.total_size_before, s.total_size_after, s.total_size_saved),
        percent=s.avg_savings_percent,
        removed=(s.total_audio_removed, s.total_subtitles_removed, s.total_attachments_removed),
        transcodes=(s.total_videos_transcoded, s.total_videos_skipped, s.total_audio_transcoded),
        times=(s.total_processing_time, s.avg_processing_time),
    )
    rows.append(
        (
            "Runs between",
            f"{human_time(s.earliest_processing)} and {human_time(s.latest_processing)} UTC",
        )
    )
    console.print(_pairs(f"Processing summary ({window})", rows))
    if s.rolling:
        table = Table(title="Rolling totals", title_justify="left", show_edge=False)
        for column in ("period", "runs", "successful", "saved"):
            table.add_column(column, justify="left" if column == "period" else "right")
        for total in s.rolling:
            table.add_row(
                total.period,
                f"{total.runs:,}",
                f"{total.successful:,}",
                human_size(total.size_saved),
            )
        console.print()
        console.print(table)


def print_policies(rows: list[PolicyStats]) -> None:
    # Drawn like the lists of runs (no rules, two spaces between columns) to fit 80
    # columns; a long policy name is folded onto more lines, never cut.
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
    table.add_column("policy", overflow="fold")
    for column in ("files", "success", "saved", "avg savings", "avg time", "last used"):
        table.add_column(column, justify="right", no_wrap=True)
    for p in rows:
        table.add_row(
            Text(p.policy_name),
            f"{p.files_processed:,}",
            human_percent(p.success_rate),
            human_size(p.total_size_saved),
            f"{p.avg_savings_percent:.1f}%",
            human_duration(p.avg_processing_time),
            human_time(p.last_used)[:10],  # the day; `stats policy NAME` has the time
        )
    stdout_console().print(table)


def print_workers(rows: list[WorkerStats]) -> None:
    # Drawn like the policies: fits 80 columns; a long host name is folded, never cut.
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
    table.add_column("worker", overflow="fold")
    for column in ("runs", "failed", "saved", "busy", "last seen (UTC)"):
        table.add_column(column, justify="right", no_wrap=True)
    for w in rows:
        table.add_row(
            Text(UNKNOWN_WORKER_LABEL if w.worker is None else w.worker),
            f"{w.runs:,}",
            f"{w.failures:,}",
            human_size(w.total_size_saved),
            human_duration(w.busy_seconds),
            human_time(w.last_seen),
        )
    stdout_console().print(table)


def print_policy(p: PolicyStats) -> None:
    rows = _outcome_rows(
        runs=(p.files_processed, p.successful, p.failed, p.success_rate),
        sizes=(p.total_size_before, p.total_size_after, p.total_size_saved),
        percent=p.avg_savings_percent,
        removed=(p.audio_tracks_removed, p.subtitle_tracks_removed, p.attachments_removed),
        transcodes=(p.videos_transcoded, p.videos_skipped, p.audio_transcoded),
        times=(p.total_processing_time, p.avg_processing_time),
    )
    rows.append(("First used", f"{human_time(p.first_used)} UTC"))
    rows.append(("Last used", f"{human_time(p.last_used)} UTC"))
    title = Text("Policy ")
    title.append(p.policy_name, style="bold")
    console = stdout_console()
    console.print(title)
    console.print(_pairs("", rows))


@dataclass(frozen=True)
class _Column:
    header: str
    cell: Callable[[RunItem], str]
    right: bool = False


_ID = _Column("stats id", lambda r: short_id(r.stats_id))
_DATE = _Column("date (UTC)", lambda r: human_time(r.processed_at))
_STATUS = _Column("status", lambda r: "ok" if r.success else "failed")
_BEFORE = _Column("before", lambda r: human_size(r.size_before), right=True)
_AFTER = _Column("after", lambda r: human_size(r.size_after), right=True)
_SAVED = _Column("saved", lambda r: human_size(r.size_saved), right=True)
_TIME = _Column("time", lambda r: human_duration(r.duration_seconds), right=True)
_POLICY = _Column("policy", lambda r: r.policy_name)  # last, or on the next line


def _print_runs(
    runs: list[RunItem], columns: list[_Column], path: Callable[[RunItem], str] | None
) -> None:
    """One line per run, the policy last, and with `path` a second line holding the
    run's file, shortened from the middle to fit. When the policies do not fit beside
    the other columns they lead the second line instead: nothing is cut but paths.

    Not a rich Table: at 80 columns a path column beside seven others would have no
    room left, and its cells would be cut."""
    console = stdout_console()
    width = console.width
    policies = [run.policy_name for run in runs]
    cells = [[column.cell(run) for column in columns] for run in runs]
    widths = [
        max([len(column.header), *(len(row[i]) for row in cells)])
        for i, column in enumerate(columns)
    ]
    fixed = sum(widths) + len(_GAP) * len(columns)
    policy_inline = fixed + max(len(_POLICY.header), *map(len, policies)) <= width
    if policy_inline:
        columns, widths = [*columns, _POLICY], [*widths, 0]
        cells = [[*row, policy] for row, policy in zip(cells, policies, strict=True)]
    indent = " " * (widths[0] + len(_GAP))

    def line(values: list[str], styles: list[str]) -> Text:
        text = Text()
        for i, (column, value) in enumerate(zip(columns, values, strict=True)):
            if i:
                text.append(_GAP)
            if i == len(columns) - 1:
                text.append(value, style=styles[i])  # the last column is not padded
            else:
                text.append(value.rjust(widths[i]) if column.right else value.ljust(widths[i]))
                text.stylize(styles[i], len(text) - widths[i])
        return text

    console.print(
        line([c.header for c in columns], ["bold"] * len(columns)), no_wrap=True, crop=True
    )
    if not policy_inline:  # the header, laid out as the rows are
        console.print(Text(indent + _POLICY.header, style="bold"), no_wrap=True, crop=True)
    for run, values in zip(runs, cells, strict=True):
        styles = ["" if c is not _STATUS else ("green" if run.success else "red") for c in columns]
        console.print(line(values, styles), no_wrap=True, crop=True)
        second = "" if policy_inline else run.policy_name
        if path is not None:
            second += _GAP if second else ""
            second += shorten_path(path(run), max(width - len(indent) - len(second), 20))
        if second:
            console.print(Text(indent + second), no_wrap=True, crop=True)


def print_file_history(file_id: int, path: str, history: list[RunItem]) -> None:
    stdout_console().print(Text(f"{path} (file {file_id})", style="bold"), soft_wrap=True)
    _print_runs(history, [_ID, _DATE, _STATUS, _BEFORE, _AFTER, _SAVED], None)


def print_folder_history(folder: str, files: int, history: list[RunItem]) -> None:
    """The runs of the files under a folder; each path is shown relative to it."""
    plural = "" if files == 1 else "s"
    stdout_console().print(
        Text(f"{folder} (a folder: runs of its {files:,} library file{plural})", style="bold"),
        soft_wrap=True,  # a path stays on one line, to be copied whole
    )
    base = folder.rstrip("/") + "/"
    _print_runs(
        history,
        [_ID, _DATE, _STATUS, _SAVED, _TIME],
        lambda run: run.file_path.removeprefix(base),
    )


def print_recent(runs: list[RunItem]) -> None:
    _print_runs(runs, [_ID, _DATE, _STATUS, _SAVED, _TIME], lambda run: run.file_path)


def _tracks(run: dict[str, Any], kind: str) -> str:
    before, after = run[f"{kind}_before"], run[f"{kind}_after"]
    return f"{before} → {after} ({after - before:+d})"


def _transcode(run: dict[str, Any]) -> str:
    source, target = run["video_source_codec"], run["video_target_codec"]
    if target:
        return f"video {source or 'of unknown codec'} → {target}"
    if run["video_transcode_skipped"]:
        reason = (run["video_skip_reason"] or "a skip condition held").replace("_", " ")
        return f"video {source} kept ({reason})" if source else f"video kept ({reason})"
    return f"video {source}, not transcoded" if source else "video not transcoded"


def print_detail(run: dict[str, Any], *, show_actions: bool, show_performance: bool) -> None:
    saved = run["size_change"]
    percent = 100.0 * saved / run["size_before"] if run["size_before"] else 0.0
    status = "success" if run["success"] else f"failed: {run['error_message'] or MISSING}"
    rows = [
        ("File", f"{run['file_path']} (file {run['file_id']})"),
        ("Policy", run["policy_name"]),
        ("Started", f"{human_time(run['processed_at'], seconds=True)} UTC"),
        ("Worker", run.get("worker") or UNKNOWN_WORKER_LABEL),
        ("Status", status),
        ("Size", f"{human_size(run['size_before'])} → {human_size(run['size_after'])}"),
        ("Saved", _saved(saved, percent)),
        ("Audio tracks", _tracks(run, "audio_tracks")),
        ("Subtitle tracks", _tracks(run, "subtitle_tracks")),
        ("Attachments", _tracks(run, "attachments")),
        (
            "Transcode",
            f"{_transcode(run)}; audio {run['audio_tracks_transcoded']} transcoded, "
            f"{run['audio_tracks_preserved']} kept",
        ),
        ("Duration", human_duration(run["duration_seconds"])),
        ("Phases", f"{run['phases_completed']}/{run['phases_total']}"),
        ("Changes", str(run["total_changes"])),
        ("Partial hash before", human_partial_hash(run["hash_before"])),
        ("Partial hash after", human_partial_hash(run["hash_after"])),
        ("Trace id", run["trace_id"] or MISSING),
    ]
    link = trace_url(run["trace_id"])
    if link is not None:
        rows.append(("Trace", link))
    console = stdout_console()
    console.print(_pairs(f"Run {run['id']}", rows))
    if show_actions:
        console.print()
        _print_actions(run["action_results"])
    if show_performance:
        table = Table(title="Phases", title_justify="left", show_edge=False)
        for column in ("phase", "wall time", "read", "written", "fps", "bitrate"):
            table.add_column(column, justify="left" if column == "phase" else "right")
        for p in run["performance_metrics"]:
            table.add_row(
                Text(p["phase_name"]),
                human_duration(p["wall_time_seconds"]),
                human_size(p["bytes_read"]),
                human_size(p["bytes_written"]),
                MISSING if p["encoding_fps"] is None else f"{p['encoding_fps']:.1f}",
                MISSING
                if p["encoding_bitrate"] is None
                else f"{p['encoding_bitrate'] // 1000} kb/s",
            )
        console.print()
        console.print(table if run["performance_metrics"] else Text("No phases were recorded."))


def _print_actions(actions: list[dict[str, Any]]) -> None:
    """The actions of a run, under the tool call that did them: one call that did four
    removes took its time once, so that time is shown once, beside the call."""
    console = stdout_console()
    if not actions:
        console.print(Text("No actions were recorded."))
        return
    console.print(Text("Actions (times are per tool call)", style="bold"))
    for group in _tool_calls(actions):
        first = group[0]
        took = "time unknown" if first["duration_ms"] is None else f"{first['duration_ms']} ms"
        tool = _tool(first)
        if len(group) > 1:
            heading = f"{tool or 'one tool call'}: {took} for {len(group)} actions"
        else:
            heading = f"{tool or 'action'}: {took}"
        if first.get("tool_call") is not None:
            heading += f" (tool call {first['tool_call']})"
        console.print(Text("  " + heading, style="bold"))
        for action in group:
            console.print(_action_line(action, tool, console.width))


def _action_line(action: dict[str, Any], tool: str | None, width: int) -> Text:
    """`ok      remove_track audio 2: ac3, fre, default → removed  [rule]` (the rule on a
    line of its own when it does not fit), and the message when it says more than that
    (an error, or not the tool's usual description)."""
    if action["track_type"] is None:
        track = "file"
    else:
        index = "" if action["track_index"] is None else f" {action['track_index']}"
        track = f"{action['track_type']}{index}"
    indent = " " * 12
    line = Text("    ")
    line.append(f"{'ok' if action['success'] else 'FAILED':<8}", style=_ok_style(action))
    line.append(f"{action['action_type']} {track}: ")
    line.append(f"{human_state(action['before_state'])} → {human_state(action['after_state'])}")
    rule = action["rule_reference"]
    if rule:
        joint = "  " if line.cell_len + 4 + len(rule) <= width else "\n" + indent
        line.append(f"{joint}[{rule}]", style="dim")
    message = action["message"] or ""
    if message and (not action["success"] or tool is None or not message.startswith(tool + ":")):
        line.append(f"\n{indent}{message}")
    return line


def _ok_style(action: dict[str, Any]) -> str:
    return "green" if action["success"] else "red"


def _tool(action: dict[str, Any]) -> str | None:
    """The tool that did the action: its `tool` value when the row has one, else the
    name at the start of its message (`mkvmerge: remove …`)."""
    if action.get("tool"):
        return str(action["tool"])
    message = action["message"] or ""
    name, colon, _ = message.partition(":")
    return name if colon and name and " " not in name else None


def _tool_calls(actions: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The actions grouped by the tool call that did them, in order.

    With a `tool_call` value on the rows, that groups them exactly. Without one, a tool
    call is recognised as consecutive actions naming the same tool in their message with
    the same outcome and durations within 1 ms (one tool run does a phase's actions, and
    their spans end together)."""
    groups: list[list[dict[str, Any]]] = []
    for action in actions:
        if groups and _same_call(groups[-1][0], action):
            groups[-1].append(action)
        else:
            groups.append([action])
    return groups


def _same_call(first: dict[str, Any], action: dict[str, Any]) -> bool:
    if first.get("tool_call") is not None or action.get("tool_call") is not None:
        return bool(first.get("tool_call") == action.get("tool_call"))
    tool = _tool(first)
    return (
        tool is not None
        and _tool(action) == tool
        and first["success"] == action["success"]
        and first["duration_ms"] is not None
        and action["duration_ms"] is not None
        and abs(first["duration_ms"] - action["duration_ms"]) <= 1
    )
