"""The tables of `vpo stats …` for people: human units, UTC times, no markup from data.

File paths, policy names and error messages are user data: they are always wrapped in
`Text`, never parsed as rich markup.
"""

from typing import Any

from rich.table import Table
from rich.text import Text

from vpo.cli.output import (
    human_duration,
    human_percent,
    human_size,
    human_time,
    stdout_console,
)
from vpo.db.aggregates import PolicyStats, StatsSummary
from vpo.db.history import RunItem


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
    if summary.since and summary.until:
        window = f"{human_time(summary.since)} → {human_time(summary.until)} UTC"
    elif summary.since:
        window = f"since {human_time(summary.since)} UTC"
    elif summary.until:
        window = f"before {human_time(summary.until)} UTC"
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
    table = Table(show_edge=False)
    for column in ("policy", "files", "success", "saved", "avg savings", "avg time", "last used"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for p in rows:
        table.add_row(
            Text(p.policy_name),
            f"{p.files_processed:,}",
            human_percent(p.success_rate),
            human_size(p.total_size_saved),
            f"{p.avg_savings_percent:.1f}%",
            human_duration(p.avg_processing_time),
            human_time(p.last_used),
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


def _status(success: bool) -> Text:
    return Text("ok", style="green") if success else Text("failed", style="red")


def print_file_history(file_id: int, path: str, history: list[RunItem]) -> None:
    console = stdout_console()
    console.print(Text(f"{path} (file {file_id})", style="bold"))
    table = Table(show_edge=False)
    for column in ("date (UTC)", "policy", "before", "after", "saved", "status", "stats id"):
        table.add_column(
            column, justify="right" if column in ("before", "after", "saved") else "left"
        )
    for run in history:
        table.add_row(
            human_time(run.processed_at),
            Text(run.policy_name),
            human_size(run.size_before),
            human_size(run.size_after),
            human_size(run.size_saved),
            _status(run.success),
            run.stats_id,
        )
    console.print(table)


def print_recent(runs: list[RunItem]) -> None:
    table = Table(show_edge=False)
    for column in ("date (UTC)", "file", "policy", "saved", "time", "status", "stats id"):
        table.add_column(column, justify="right" if column in ("saved", "time") else "left")
    for run in runs:
        table.add_row(
            human_time(run.processed_at),
            Text(run.file_path),
            Text(run.policy_name),
            human_size(run.size_saved),
            human_duration(run.duration_seconds),
            _status(run.success),
            run.stats_id,
        )
    stdout_console().print(table)


def _tracks(run: dict[str, Any], kind: str) -> str:
    before, after = run[f"{kind}_before"], run[f"{kind}_after"]
    return f"{before} → {after} ({after - before:+d})"


def _transcode(run: dict[str, Any]) -> str:
    source = run["video_source_codec"] or "?"
    if run["video_target_codec"]:
        return f"video {source} → {run['video_target_codec']}"
    if run["video_transcode_skipped"]:
        return f"video {source} kept ({run['video_skip_reason'] or 'skip condition held'})"
    return f"video {source}, not transcoded"


def print_detail(run: dict[str, Any], *, show_actions: bool, show_performance: bool) -> None:
    saved = run["size_change"]
    percent = 100.0 * saved / run["size_before"] if run["size_before"] else 0.0
    status = "success" if run["success"] else f"failed: {run['error_message']}"
    rows = [
        ("File", f"{run['file_path']} (file {run['file_id']})"),
        ("Policy", run["policy_name"]),
        ("Started", f"{human_time(run['processed_at'])} UTC"),
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
        ("Hash before", run["hash_before"] or "-"),
        ("Hash after", run["hash_after"] or "-"),
        ("Trace id", run["trace_id"] or "-"),
    ]
    console = stdout_console()
    console.print(_pairs(f"Run {run['id']}", rows))
    if show_actions:
        table = Table(title="Actions", title_justify="left", show_edge=False)
        for column in ("type", "track", "before", "after", "ok", "ms", "rule", "message"):
            table.add_column(column)
        for a in run["action_results"]:
            track = (
                f"{a['track_type'] or '-'} {'' if a['track_index'] is None else a['track_index']}"
            )
            table.add_row(
                Text(a["action_type"]),
                Text(track.strip()),
                Text(_state(a["before_state"])),
                Text(_state(a["after_state"])),
                "yes" if a["success"] else Text("no", style="red"),
                "-" if a["duration_ms"] is None else str(a["duration_ms"]),
                Text(a["rule_reference"] or ""),
                Text(a["message"] or ""),
            )
        console.print()
        console.print(table if run["action_results"] else Text("No actions were recorded."))
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
                "-" if p["encoding_fps"] is None else f"{p['encoding_fps']:.1f}",
                "-" if p["encoding_bitrate"] is None else f"{p['encoding_bitrate'] // 1000} kb/s",
            )
        console.print()
        console.print(table if run["performance_metrics"] else Text("No phases were recorded."))


def _state(state: dict[str, Any] | None) -> str:
    if not state:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in state.items())
