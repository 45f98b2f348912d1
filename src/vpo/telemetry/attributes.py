"""The span contract (docs/statistics.md): every span name and `vpo.*` attribute, in one place.

The workflow sets these on its spans; the exporter builds statistics rows from them.
Neither side spells an attribute name anywhere else.
"""

# Span names
PROCESS_FILE = "vpo.process_file"  # the root of one file run
PHASE = "vpo.phase"  # one policy phase, child of the root
ACTION = "vpo.action"  # one action, child of its phase
# A worker's sign of life for one run in progress, child of the run's root: sent when the
# run starts, when a phase ends and every few seconds, straight to the server (never
# spooled). It carries the root's ids and its marker values (MARKER_VALUES) so far, so
# the server can record the run as interrupted if the worker falls silent
# (docs/workers.md). It makes no row of its own.
RUN_HEARTBEAT = "vpo.run.heartbeat"

# vpo.process_file — set at start
STATS_ID = "vpo.stats.id"
FILE_ID = "vpo.file.id"
FILE_PATH = "vpo.file.path"
POLICY_NAME = "vpo.policy.name"
PHASES_TOTAL = "vpo.phases.total"
SIZE_BEFORE = "vpo.size.before"
AUDIO_BEFORE = "vpo.tracks.audio.before"
SUBTITLE_BEFORE = "vpo.tracks.subtitle.before"
ATTACHMENT_BEFORE = "vpo.tracks.attachment.before"
HASH_BEFORE = "vpo.hash.before"
VIDEO_SOURCE_CODEC = "vpo.video.source_codec"

# vpo.process_file — set before it ends
SIZE_AFTER = "vpo.size.after"
AUDIO_AFTER = "vpo.tracks.audio.after"
SUBTITLE_AFTER = "vpo.tracks.subtitle.after"
ATTACHMENT_AFTER = "vpo.tracks.attachment.after"
# Optional: what the actions removed; when set it must agree with before - after.
AUDIO_REMOVED = "vpo.tracks.audio.removed"
SUBTITLE_REMOVED = "vpo.tracks.subtitle.removed"
ATTACHMENT_REMOVED = "vpo.tracks.attachment.removed"
HASH_AFTER = "vpo.hash.after"
VIDEO_TARGET_CODEC = "vpo.video.target_codec"
VIDEO_TRANSCODE_SKIPPED = "vpo.video.transcode_skipped"
VIDEO_SKIP_REASON = "vpo.video.skip_reason"
AUDIO_TRANSCODED = "vpo.audio.transcoded"
AUDIO_PRESERVED = "vpo.audio.preserved"
PHASES_COMPLETED = "vpo.phases.completed"
CHANGES_TOTAL = "vpo.changes.total"

# vpo.process_file — optional: the worker, the host that ran the run. When the root lacks
# it the exporter takes the `host.name` of the span's resource (setup.py puts this host's
# name there; spans a remote worker sends carry its own), else the exporter's own host.
WORKER = "vpo.worker"
HOST_NAME = "host.name"  # a resource attribute (OpenTelemetry semantic conventions)

# vpo.run.heartbeat — besides the root's STATS_ID, FILE_ID, FILE_PATH, POLICY_NAME and
# marker values: when the run started (the root's start, UTC ISO 8601) and the worker's pid.
RUN_STARTED_AT = "vpo.run.started_at"
WORKER_PID = "vpo.worker.pid"

# vpo.phase
PHASE_NAME = "vpo.phase.name"
BYTES_READ = "vpo.phase.bytes_read"
BYTES_WRITTEN = "vpo.phase.bytes_written"
ENCODING_FPS = "vpo.phase.encoding_fps"
ENCODING_BITRATE = "vpo.phase.encoding_bitrate"

# vpo.action
ACTION_TYPE = "vpo.action.type"
TRACK_TYPE = "vpo.track.type"
TRACK_INDEX = "vpo.track.index"
ACTION_BEFORE = "vpo.action.before"  # JSON object as a string
ACTION_AFTER = "vpo.action.after"  # JSON object as a string
ACTION_RULE = "vpo.action.rule"
ACTION_MESSAGE = "vpo.action.message"
# The tool call that did the action: one call (mkvpropedit, mkvmerge or ffmpeg) does all
# of a phase's actions, so they share its number and each span covers the whole call.
ACTION_TOOL = "vpo.action.tool"  # absent when no tool ran
ACTION_TOOL_CALL = "vpo.action.tool_call"  # 1-based, counted within the file run

# Before values of the root, by the key the interrupted-run marker stores them under
# (see vpo.db.interrupted.BEFORE_KEYS).
BEFORE_VALUES = {
    SIZE_BEFORE: "size_before",
    AUDIO_BEFORE: "audio_tracks_before",
    SUBTITLE_BEFORE: "subtitle_tracks_before",
    ATTACHMENT_BEFORE: "attachments_before",
    HASH_BEFORE: "hash_before",
    VIDEO_SOURCE_CODEC: "video_source_codec",
    PHASES_TOTAL: "phases_total",
}

# After values of the root, by the key the interrupted-run marker stores them under
# (see vpo.db.interrupted.AFTER_KEYS). The workflow sets them on the root, as they stand
# after each phase that changed the file, before it ends that phase's span.
AFTER_VALUES = {
    SIZE_AFTER: "size_after",
    HASH_AFTER: "hash_after",
    AUDIO_AFTER: "audio_tracks_after",
    SUBTITLE_AFTER: "subtitle_tracks_after",
    ATTACHMENT_AFTER: "attachments_after",
    PHASES_COMPLETED: "phases_completed",
    CHANGES_TOTAL: "total_changes",
}

# Everything a run's marker keeps.
MARKER_VALUES = {**BEFORE_VALUES, **AFTER_VALUES}
