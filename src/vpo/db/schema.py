"""The SQL of each schema version, applied in order by `migrations.py`.

Every released step is a literal and is never edited: a change is a new step. A step
must not be computed from code that may change later (the measures, the resolution
classes), or a new database would get a different schema than an upgraded one.
Version 1 holds the library (files, tracks); version 2 adds the statistics tables;
version 3 library totals; version 4 the statistics rollups; version 5 the tool call of
each action; version 6 what watch mode has settled; version 7 the worker (host) of each
run.
"""

V1_LIBRARY = """
CREATE TABLE files (
    id               INTEGER PRIMARY KEY,
    path             TEXT NOT NULL UNIQUE,
    size_bytes       INTEGER NOT NULL CHECK (size_bytes >= 0),
    mtime            REAL NOT NULL,
    container        TEXT,
    duration_seconds REAL,
    content_hash     TEXT,
    scanned_at       TEXT NOT NULL,
    scan_error       TEXT
);

CREATE TABLE tracks (
    id          INTEGER PRIMARY KEY,
    file_id     INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    track_index INTEGER NOT NULL,
    track_type  TEXT NOT NULL CHECK (track_type IN ('video', 'audio', 'subtitle', 'attachment')),
    codec       TEXT,
    language    TEXT NOT NULL DEFAULT 'und',
    title       TEXT,
    is_default  INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    is_forced   INTEGER NOT NULL DEFAULT 0 CHECK (is_forced IN (0, 1)),
    channels    INTEGER,
    width       INTEGER,
    height      INTEGER,
    bitrate     INTEGER,
    UNIQUE (file_id, track_index)
);

CREATE INDEX idx_tracks_type_codec ON tracks(track_type, codec);
CREATE INDEX idx_files_container ON files(container);
"""

V2_STATISTICS = """
CREATE TABLE processing_stats (
    id                        TEXT PRIMARY KEY,
    file_id                   INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    processed_at              TEXT NOT NULL,
    policy_name               TEXT NOT NULL,
    size_before               INTEGER NOT NULL CHECK (size_before >= 0),
    size_after                INTEGER NOT NULL CHECK (size_after >= 0),
    size_change               INTEGER NOT NULL CHECK (size_change = size_before - size_after),
    audio_tracks_before       INTEGER NOT NULL DEFAULT 0 CHECK (audio_tracks_before >= 0),
    subtitle_tracks_before    INTEGER NOT NULL DEFAULT 0 CHECK (subtitle_tracks_before >= 0),
    attachments_before        INTEGER NOT NULL DEFAULT 0 CHECK (attachments_before >= 0),
    audio_tracks_after        INTEGER NOT NULL DEFAULT 0 CHECK (audio_tracks_after >= 0),
    subtitle_tracks_after     INTEGER NOT NULL DEFAULT 0 CHECK (subtitle_tracks_after >= 0),
    attachments_after         INTEGER NOT NULL DEFAULT 0 CHECK (attachments_after >= 0),
    audio_tracks_removed      INTEGER NOT NULL DEFAULT 0 CHECK (audio_tracks_removed >= 0),
    subtitle_tracks_removed   INTEGER NOT NULL DEFAULT 0 CHECK (subtitle_tracks_removed >= 0),
    attachments_removed       INTEGER NOT NULL DEFAULT 0 CHECK (attachments_removed >= 0),
    duration_seconds          REAL NOT NULL CHECK (duration_seconds >= 0),
    phases_completed          INTEGER NOT NULL DEFAULT 0,
    phases_total              INTEGER NOT NULL DEFAULT 0,
    total_changes             INTEGER NOT NULL DEFAULT 0 CHECK (total_changes >= 0),
    video_source_codec        TEXT,
    video_target_codec        TEXT,
    video_transcode_skipped   INTEGER NOT NULL DEFAULT 0 CHECK (video_transcode_skipped IN (0, 1)),
    video_skip_reason         TEXT,
    audio_tracks_transcoded   INTEGER NOT NULL DEFAULT 0 CHECK (audio_tracks_transcoded >= 0),
    audio_tracks_preserved    INTEGER NOT NULL DEFAULT 0 CHECK (audio_tracks_preserved >= 0),
    hash_before               TEXT,
    hash_after                TEXT,
    success                   INTEGER NOT NULL CHECK (success IN (0, 1)),
    error_message             TEXT,
    trace_id                  TEXT,
    CHECK (phases_completed >= 0 AND phases_completed <= phases_total)
);

CREATE INDEX idx_stats_file ON processing_stats(file_id);
CREATE INDEX idx_stats_policy ON processing_stats(policy_name);
CREATE INDEX idx_stats_time ON processing_stats(processed_at DESC);
CREATE INDEX idx_stats_success ON processing_stats(success);

CREATE TABLE action_results (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    stats_id       TEXT NOT NULL REFERENCES processing_stats(id) ON DELETE CASCADE,
    action_type    TEXT NOT NULL,
    track_type     TEXT,
    track_index    INTEGER,
    before_state   TEXT CHECK (before_state IS NULL OR json_valid(before_state)),
    after_state    TEXT CHECK (after_state IS NULL OR json_valid(after_state)),
    success        INTEGER NOT NULL CHECK (success IN (0, 1)),
    duration_ms    INTEGER CHECK (duration_ms IS NULL OR duration_ms >= 0),
    rule_reference TEXT,
    message        TEXT
);

CREATE INDEX idx_actions_stats ON action_results(stats_id);
CREATE INDEX idx_actions_type ON action_results(action_type);
CREATE INDEX idx_actions_track_type ON action_results(track_type);

CREATE TABLE performance_metrics (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    stats_id          TEXT NOT NULL REFERENCES processing_stats(id) ON DELETE CASCADE,
    phase_name        TEXT NOT NULL,
    wall_time_seconds REAL NOT NULL CHECK (wall_time_seconds >= 0),
    bytes_read        INTEGER CHECK (bytes_read IS NULL OR bytes_read >= 0),
    bytes_written     INTEGER CHECK (bytes_written IS NULL OR bytes_written >= 0),
    encoding_fps      REAL CHECK (encoding_fps IS NULL OR encoding_fps >= 0),
    encoding_bitrate  INTEGER CHECK (encoding_bitrate IS NULL OR encoding_bitrate >= 0)
);

CREATE INDEX idx_perf_stats ON performance_metrics(stats_id);
CREATE INDEX idx_perf_phase ON performance_metrics(phase_name);
"""

# Version 3: the first video track on the file row, and library totals kept by
# triggers so a Prometheus scrape reads a few rows instead of grouping every file and
# track. A video's resolution class (sd / 720p / 1080p / 2160p) goes by either
# dimension, so that cropped (2.39:1) and 4:3 encodes land in the class people expect.
V3_LIBRARY_TOTALS = """
ALTER TABLE files ADD COLUMN video_codec TEXT;
ALTER TABLE files ADD COLUMN video_width INTEGER;
ALTER TABLE files ADD COLUMN video_height INTEGER;

UPDATE files SET
    video_codec = (SELECT codec FROM tracks t WHERE t.file_id = files.id
                   AND t.track_type = 'video' ORDER BY t.track_index LIMIT 1),
    video_width = (SELECT width FROM tracks t WHERE t.file_id = files.id
                   AND t.track_type = 'video' ORDER BY t.track_index LIMIT 1),
    video_height = (SELECT height FROM tracks t WHERE t.file_id = files.id
                    AND t.track_type = 'video' ORDER BY t.track_index LIMIT 1);

CREATE TABLE library_file_totals (
    container   TEXT NOT NULL,
    video_codec TEXT NOT NULL,
    resolution  TEXT NOT NULL,
    files       INTEGER NOT NULL,
    size_bytes  INTEGER NOT NULL,
    PRIMARY KEY (container, video_codec, resolution)
) WITHOUT ROWID;

CREATE TABLE library_track_totals (
    track_type TEXT NOT NULL,
    codec      TEXT NOT NULL,
    tracks     INTEGER NOT NULL,
    PRIMARY KEY (track_type, codec)
) WITHOUT ROWID;

INSERT INTO library_file_totals (container, video_codec, resolution, files, size_bytes)
SELECT coalesce(files.container, 'unknown'), coalesce(files.video_codec, 'none'),
    CASE
        WHEN files.video_width IS NULL AND files.video_height IS NULL THEN 'unknown'
        WHEN coalesce(files.video_width, 0) >= 3000
            OR coalesce(files.video_height, 0) >= 1800 THEN '2160p'
        WHEN coalesce(files.video_width, 0) >= 1600
            OR coalesce(files.video_height, 0) >= 900 THEN '1080p'
        WHEN coalesce(files.video_width, 0) >= 1100
            OR coalesce(files.video_height, 0) >= 650 THEN '720p'
        ELSE 'sd'
    END AS k1, count(*), coalesce(sum(size_bytes), 0)
FROM files GROUP BY 1, 2, 3;

INSERT INTO library_track_totals (track_type, codec, tracks)
SELECT track_type, coalesce(codec, 'unknown'), count(*) FROM tracks GROUP BY 1, 2;

CREATE TRIGGER files_totals_insert AFTER INSERT ON files BEGIN
    INSERT INTO library_file_totals (container, video_codec, resolution, files, size_bytes)
    VALUES (coalesce(NEW.container, 'unknown'), coalesce(NEW.video_codec, 'none'),
        CASE
            WHEN NEW.video_width IS NULL AND NEW.video_height IS NULL THEN 'unknown'
            WHEN coalesce(NEW.video_width, 0) >= 3000
                OR coalesce(NEW.video_height, 0) >= 1800 THEN '2160p'
            WHEN coalesce(NEW.video_width, 0) >= 1600
                OR coalesce(NEW.video_height, 0) >= 900 THEN '1080p'
            WHEN coalesce(NEW.video_width, 0) >= 1100
                OR coalesce(NEW.video_height, 0) >= 650 THEN '720p'
            ELSE 'sd'
        END, +1, +NEW.size_bytes)
    ON CONFLICT (container, video_codec, resolution) DO UPDATE SET
        files = files + excluded.files, size_bytes = size_bytes + excluded.size_bytes;
END;

CREATE TRIGGER files_totals_delete AFTER DELETE ON files BEGIN
    INSERT INTO library_file_totals (container, video_codec, resolution, files, size_bytes)
    VALUES (coalesce(OLD.container, 'unknown'), coalesce(OLD.video_codec, 'none'),
        CASE
            WHEN OLD.video_width IS NULL AND OLD.video_height IS NULL THEN 'unknown'
            WHEN coalesce(OLD.video_width, 0) >= 3000
                OR coalesce(OLD.video_height, 0) >= 1800 THEN '2160p'
            WHEN coalesce(OLD.video_width, 0) >= 1600
                OR coalesce(OLD.video_height, 0) >= 900 THEN '1080p'
            WHEN coalesce(OLD.video_width, 0) >= 1100
                OR coalesce(OLD.video_height, 0) >= 650 THEN '720p'
            ELSE 'sd'
        END, -1, -OLD.size_bytes)
    ON CONFLICT (container, video_codec, resolution) DO UPDATE SET
        files = files + excluded.files, size_bytes = size_bytes + excluded.size_bytes;
END;

CREATE TRIGGER files_totals_update
AFTER UPDATE OF size_bytes, container, video_codec, video_width, video_height ON files BEGIN
    INSERT INTO library_file_totals (container, video_codec, resolution, files, size_bytes)
    VALUES (coalesce(OLD.container, 'unknown'), coalesce(OLD.video_codec, 'none'),
        CASE
            WHEN OLD.video_width IS NULL AND OLD.video_height IS NULL THEN 'unknown'
            WHEN coalesce(OLD.video_width, 0) >= 3000
                OR coalesce(OLD.video_height, 0) >= 1800 THEN '2160p'
            WHEN coalesce(OLD.video_width, 0) >= 1600
                OR coalesce(OLD.video_height, 0) >= 900 THEN '1080p'
            WHEN coalesce(OLD.video_width, 0) >= 1100
                OR coalesce(OLD.video_height, 0) >= 650 THEN '720p'
            ELSE 'sd'
        END, -1, -OLD.size_bytes)
    ON CONFLICT (container, video_codec, resolution) DO UPDATE SET
        files = files + excluded.files, size_bytes = size_bytes + excluded.size_bytes;
    INSERT INTO library_file_totals (container, video_codec, resolution, files, size_bytes)
    VALUES (coalesce(NEW.container, 'unknown'), coalesce(NEW.video_codec, 'none'),
        CASE
            WHEN NEW.video_width IS NULL AND NEW.video_height IS NULL THEN 'unknown'
            WHEN coalesce(NEW.video_width, 0) >= 3000
                OR coalesce(NEW.video_height, 0) >= 1800 THEN '2160p'
            WHEN coalesce(NEW.video_width, 0) >= 1600
                OR coalesce(NEW.video_height, 0) >= 900 THEN '1080p'
            WHEN coalesce(NEW.video_width, 0) >= 1100
                OR coalesce(NEW.video_height, 0) >= 650 THEN '720p'
            ELSE 'sd'
        END, +1, +NEW.size_bytes)
    ON CONFLICT (container, video_codec, resolution) DO UPDATE SET
        files = files + excluded.files, size_bytes = size_bytes + excluded.size_bytes;
END;

CREATE TRIGGER tracks_totals_insert AFTER INSERT ON tracks BEGIN
    INSERT INTO library_track_totals (track_type, codec, tracks)
    VALUES (NEW.track_type, coalesce(NEW.codec, 'unknown'), +1)
    ON CONFLICT (track_type, codec) DO UPDATE SET tracks = tracks + excluded.tracks;
END;

CREATE TRIGGER tracks_totals_delete AFTER DELETE ON tracks BEGIN
    INSERT INTO library_track_totals (track_type, codec, tracks)
    VALUES (OLD.track_type, coalesce(OLD.codec, 'unknown'), -1)
    ON CONFLICT (track_type, codec) DO UPDATE SET tracks = tracks + excluded.tracks;
END;
"""

# Version 4: the statistics rollups — the measures of vpo.db.measures as they were at
# this version, summed per policy and per hour, day and month, kept by triggers in the
# transaction that writes (or purges) the runs, so that summaries and windows read a few
# hundred rows instead of every run. Filled from the runs already recorded. The
# statistics indexes gain the time as a second column, so a file's history, a policy's
# last use and the latest failures are read in order from an index. Written by
# vpo.db.rollup_sql.statistics_rollups_sql.
V4_STATISTICS_ROLLUPS = """
CREATE TABLE stats_rollups (
    span        TEXT NOT NULL CHECK (span IN ('hour', 'day', 'month')),
    bucket      TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    runs INTEGER NOT NULL, successes INTEGER NOT NULL, size_before INTEGER NOT NULL,
    size_after INTEGER NOT NULL, size_saved INTEGER NOT NULL, audio_removed INTEGER NOT NULL,
    subtitles_removed INTEGER NOT NULL, attachments_removed INTEGER NOT NULL,
    videos_transcoded INTEGER NOT NULL, videos_skipped INTEGER NOT NULL,
    audio_transcoded INTEGER NOT NULL, duration_us INTEGER NOT NULL,
    PRIMARY KEY (span, bucket, policy_name)
) WITHOUT ROWID;

INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before, size_after,
    size_saved, audio_removed, subtitles_removed, attachments_removed, videos_transcoded,
    videos_skipped, audio_transcoded, duration_us)
SELECT 'hour', substr(processed_at, 1, 13), policy_name, sum(1), sum(processing_stats.success),
    sum(processing_stats.size_before), sum(processing_stats.size_after),
    sum(processing_stats.size_change), sum(processing_stats.audio_tracks_removed),
    sum(processing_stats.subtitle_tracks_removed), sum(processing_stats.attachments_removed),
    sum((processing_stats.video_target_codec IS NOT NULL)),
    sum(processing_stats.video_transcode_skipped),
    sum(processing_stats.audio_tracks_transcoded),
    sum(CAST(round(processing_stats.duration_seconds * 1000000) AS INTEGER))
FROM processing_stats GROUP BY 2, 3;

INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before, size_after,
    size_saved, audio_removed, subtitles_removed, attachments_removed, videos_transcoded,
    videos_skipped, audio_transcoded, duration_us)
SELECT 'day', substr(bucket, 1, 10), policy_name, sum(runs), sum(successes), sum(size_before),
    sum(size_after), sum(size_saved), sum(audio_removed), sum(subtitles_removed),
    sum(attachments_removed), sum(videos_transcoded), sum(videos_skipped),
    sum(audio_transcoded), sum(duration_us)
FROM stats_rollups WHERE span = 'hour' GROUP BY 2, 3;

INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before, size_after,
    size_saved, audio_removed, subtitles_removed, attachments_removed, videos_transcoded,
    videos_skipped, audio_transcoded, duration_us)
SELECT 'month', substr(bucket, 1, 7), policy_name, sum(runs), sum(successes), sum(size_before),
    sum(size_after), sum(size_saved), sum(audio_removed), sum(subtitles_removed),
    sum(attachments_removed), sum(videos_transcoded), sum(videos_skipped),
    sum(audio_transcoded), sum(duration_us)
FROM stats_rollups WHERE span = 'day' GROUP BY 2, 3;

CREATE TRIGGER stats_rollups_insert AFTER INSERT ON processing_stats BEGIN
    INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before,
        size_after, size_saved, audio_removed, subtitles_removed, attachments_removed,
        videos_transcoded, videos_skipped, audio_transcoded, duration_us)
    VALUES ('month', substr(NEW.processed_at, 1, 7), NEW.policy_name, +(1), +(NEW.success),
        +(NEW.size_before), +(NEW.size_after), +(NEW.size_change), +(NEW.audio_tracks_removed),
        +(NEW.subtitle_tracks_removed), +(NEW.attachments_removed),
        +((NEW.video_target_codec IS NOT NULL)), +(NEW.video_transcode_skipped),
        +(NEW.audio_tracks_transcoded),
        +(CAST(round(NEW.duration_seconds * 1000000) AS INTEGER)))
    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET runs = runs + excluded.runs,
        successes = successes + excluded.successes,
        size_before = size_before + excluded.size_before,
        size_after = size_after + excluded.size_after,
        size_saved = size_saved + excluded.size_saved,
        audio_removed = audio_removed + excluded.audio_removed,
        subtitles_removed = subtitles_removed + excluded.subtitles_removed,
        attachments_removed = attachments_removed + excluded.attachments_removed,
        videos_transcoded = videos_transcoded + excluded.videos_transcoded,
        videos_skipped = videos_skipped + excluded.videos_skipped,
        audio_transcoded = audio_transcoded + excluded.audio_transcoded,
        duration_us = duration_us + excluded.duration_us;
    INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before,
        size_after, size_saved, audio_removed, subtitles_removed, attachments_removed,
        videos_transcoded, videos_skipped, audio_transcoded, duration_us)
    VALUES ('day', substr(NEW.processed_at, 1, 10), NEW.policy_name, +(1), +(NEW.success),
        +(NEW.size_before), +(NEW.size_after), +(NEW.size_change), +(NEW.audio_tracks_removed),
        +(NEW.subtitle_tracks_removed), +(NEW.attachments_removed),
        +((NEW.video_target_codec IS NOT NULL)), +(NEW.video_transcode_skipped),
        +(NEW.audio_tracks_transcoded),
        +(CAST(round(NEW.duration_seconds * 1000000) AS INTEGER)))
    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET runs = runs + excluded.runs,
        successes = successes + excluded.successes,
        size_before = size_before + excluded.size_before,
        size_after = size_after + excluded.size_after,
        size_saved = size_saved + excluded.size_saved,
        audio_removed = audio_removed + excluded.audio_removed,
        subtitles_removed = subtitles_removed + excluded.subtitles_removed,
        attachments_removed = attachments_removed + excluded.attachments_removed,
        videos_transcoded = videos_transcoded + excluded.videos_transcoded,
        videos_skipped = videos_skipped + excluded.videos_skipped,
        audio_transcoded = audio_transcoded + excluded.audio_transcoded,
        duration_us = duration_us + excluded.duration_us;
    INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before,
        size_after, size_saved, audio_removed, subtitles_removed, attachments_removed,
        videos_transcoded, videos_skipped, audio_transcoded, duration_us)
    VALUES ('hour', substr(NEW.processed_at, 1, 13), NEW.policy_name, +(1), +(NEW.success),
        +(NEW.size_before), +(NEW.size_after), +(NEW.size_change), +(NEW.audio_tracks_removed),
        +(NEW.subtitle_tracks_removed), +(NEW.attachments_removed),
        +((NEW.video_target_codec IS NOT NULL)), +(NEW.video_transcode_skipped),
        +(NEW.audio_tracks_transcoded),
        +(CAST(round(NEW.duration_seconds * 1000000) AS INTEGER)))
    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET runs = runs + excluded.runs,
        successes = successes + excluded.successes,
        size_before = size_before + excluded.size_before,
        size_after = size_after + excluded.size_after,
        size_saved = size_saved + excluded.size_saved,
        audio_removed = audio_removed + excluded.audio_removed,
        subtitles_removed = subtitles_removed + excluded.subtitles_removed,
        attachments_removed = attachments_removed + excluded.attachments_removed,
        videos_transcoded = videos_transcoded + excluded.videos_transcoded,
        videos_skipped = videos_skipped + excluded.videos_skipped,
        audio_transcoded = audio_transcoded + excluded.audio_transcoded,
        duration_us = duration_us + excluded.duration_us;
END;

CREATE TRIGGER stats_rollups_delete AFTER DELETE ON processing_stats BEGIN
    INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before,
        size_after, size_saved, audio_removed, subtitles_removed, attachments_removed,
        videos_transcoded, videos_skipped, audio_transcoded, duration_us)
    VALUES ('month', substr(OLD.processed_at, 1, 7), OLD.policy_name, -(1), -(OLD.success),
        -(OLD.size_before), -(OLD.size_after), -(OLD.size_change), -(OLD.audio_tracks_removed),
        -(OLD.subtitle_tracks_removed), -(OLD.attachments_removed),
        -((OLD.video_target_codec IS NOT NULL)), -(OLD.video_transcode_skipped),
        -(OLD.audio_tracks_transcoded),
        -(CAST(round(OLD.duration_seconds * 1000000) AS INTEGER)))
    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET runs = runs + excluded.runs,
        successes = successes + excluded.successes,
        size_before = size_before + excluded.size_before,
        size_after = size_after + excluded.size_after,
        size_saved = size_saved + excluded.size_saved,
        audio_removed = audio_removed + excluded.audio_removed,
        subtitles_removed = subtitles_removed + excluded.subtitles_removed,
        attachments_removed = attachments_removed + excluded.attachments_removed,
        videos_transcoded = videos_transcoded + excluded.videos_transcoded,
        videos_skipped = videos_skipped + excluded.videos_skipped,
        audio_transcoded = audio_transcoded + excluded.audio_transcoded,
        duration_us = duration_us + excluded.duration_us;
    DELETE FROM stats_rollups WHERE span = 'month' AND bucket = substr(OLD.processed_at, 1, 7)
        AND policy_name = OLD.policy_name AND runs = 0;
    INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before,
        size_after, size_saved, audio_removed, subtitles_removed, attachments_removed,
        videos_transcoded, videos_skipped, audio_transcoded, duration_us)
    VALUES ('day', substr(OLD.processed_at, 1, 10), OLD.policy_name, -(1), -(OLD.success),
        -(OLD.size_before), -(OLD.size_after), -(OLD.size_change), -(OLD.audio_tracks_removed),
        -(OLD.subtitle_tracks_removed), -(OLD.attachments_removed),
        -((OLD.video_target_codec IS NOT NULL)), -(OLD.video_transcode_skipped),
        -(OLD.audio_tracks_transcoded),
        -(CAST(round(OLD.duration_seconds * 1000000) AS INTEGER)))
    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET runs = runs + excluded.runs,
        successes = successes + excluded.successes,
        size_before = size_before + excluded.size_before,
        size_after = size_after + excluded.size_after,
        size_saved = size_saved + excluded.size_saved,
        audio_removed = audio_removed + excluded.audio_removed,
        subtitles_removed = subtitles_removed + excluded.subtitles_removed,
        attachments_removed = attachments_removed + excluded.attachments_removed,
        videos_transcoded = videos_transcoded + excluded.videos_transcoded,
        videos_skipped = videos_skipped + excluded.videos_skipped,
        audio_transcoded = audio_transcoded + excluded.audio_transcoded,
        duration_us = duration_us + excluded.duration_us;
    DELETE FROM stats_rollups WHERE span = 'day' AND bucket = substr(OLD.processed_at, 1, 10)
        AND policy_name = OLD.policy_name AND runs = 0;
    INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before,
        size_after, size_saved, audio_removed, subtitles_removed, attachments_removed,
        videos_transcoded, videos_skipped, audio_transcoded, duration_us)
    VALUES ('hour', substr(OLD.processed_at, 1, 13), OLD.policy_name, -(1), -(OLD.success),
        -(OLD.size_before), -(OLD.size_after), -(OLD.size_change), -(OLD.audio_tracks_removed),
        -(OLD.subtitle_tracks_removed), -(OLD.attachments_removed),
        -((OLD.video_target_codec IS NOT NULL)), -(OLD.video_transcode_skipped),
        -(OLD.audio_tracks_transcoded),
        -(CAST(round(OLD.duration_seconds * 1000000) AS INTEGER)))
    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET runs = runs + excluded.runs,
        successes = successes + excluded.successes,
        size_before = size_before + excluded.size_before,
        size_after = size_after + excluded.size_after,
        size_saved = size_saved + excluded.size_saved,
        audio_removed = audio_removed + excluded.audio_removed,
        subtitles_removed = subtitles_removed + excluded.subtitles_removed,
        attachments_removed = attachments_removed + excluded.attachments_removed,
        videos_transcoded = videos_transcoded + excluded.videos_transcoded,
        videos_skipped = videos_skipped + excluded.videos_skipped,
        audio_transcoded = audio_transcoded + excluded.audio_transcoded,
        duration_us = duration_us + excluded.duration_us;
    DELETE FROM stats_rollups WHERE span = 'hour' AND bucket = substr(OLD.processed_at, 1, 13)
        AND policy_name = OLD.policy_name AND runs = 0;
END;

CREATE TRIGGER stats_rollups_update AFTER UPDATE ON processing_stats BEGIN
    INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before,
        size_after, size_saved, audio_removed, subtitles_removed, attachments_removed,
        videos_transcoded, videos_skipped, audio_transcoded, duration_us)
    VALUES ('month', substr(OLD.processed_at, 1, 7), OLD.policy_name, -(1), -(OLD.success),
        -(OLD.size_before), -(OLD.size_after), -(OLD.size_change), -(OLD.audio_tracks_removed),
        -(OLD.subtitle_tracks_removed), -(OLD.attachments_removed),
        -((OLD.video_target_codec IS NOT NULL)), -(OLD.video_transcode_skipped),
        -(OLD.audio_tracks_transcoded),
        -(CAST(round(OLD.duration_seconds * 1000000) AS INTEGER)))
    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET runs = runs + excluded.runs,
        successes = successes + excluded.successes,
        size_before = size_before + excluded.size_before,
        size_after = size_after + excluded.size_after,
        size_saved = size_saved + excluded.size_saved,
        audio_removed = audio_removed + excluded.audio_removed,
        subtitles_removed = subtitles_removed + excluded.subtitles_removed,
        attachments_removed = attachments_removed + excluded.attachments_removed,
        videos_transcoded = videos_transcoded + excluded.videos_transcoded,
        videos_skipped = videos_skipped + excluded.videos_skipped,
        audio_transcoded = audio_transcoded + excluded.audio_transcoded,
        duration_us = duration_us + excluded.duration_us;
    DELETE FROM stats_rollups WHERE span = 'month' AND bucket = substr(OLD.processed_at, 1, 7)
        AND policy_name = OLD.policy_name AND runs = 0;
    INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before,
        size_after, size_saved, audio_removed, subtitles_removed, attachments_removed,
        videos_transcoded, videos_skipped, audio_transcoded, duration_us)
    VALUES ('day', substr(OLD.processed_at, 1, 10), OLD.policy_name, -(1), -(OLD.success),
        -(OLD.size_before), -(OLD.size_after), -(OLD.size_change), -(OLD.audio_tracks_removed),
        -(OLD.subtitle_tracks_removed), -(OLD.attachments_removed),
        -((OLD.video_target_codec IS NOT NULL)), -(OLD.video_transcode_skipped),
        -(OLD.audio_tracks_transcoded),
        -(CAST(round(OLD.duration_seconds * 1000000) AS INTEGER)))
    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET runs = runs + excluded.runs,
        successes = successes + excluded.successes,
        size_before = size_before + excluded.size_before,
        size_after = size_after + excluded.size_after,
        size_saved = size_saved + excluded.size_saved,
        audio_removed = audio_removed + excluded.audio_removed,
        subtitles_removed = subtitles_removed + excluded.subtitles_removed,
        attachments_removed = attachments_removed + excluded.attachments_removed,
        videos_transcoded = videos_transcoded + excluded.videos_transcoded,
        videos_skipped = videos_skipped + excluded.videos_skipped,
        audio_transcoded = audio_transcoded + excluded.audio_transcoded,
        duration_us = duration_us + excluded.duration_us;
    DELETE FROM stats_rollups WHERE span = 'day' AND bucket = substr(OLD.processed_at, 1, 10)
        AND policy_name = OLD.policy_name AND runs = 0;
    INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before,
        size_after, size_saved, audio_removed, subtitles_removed, attachments_removed,
        videos_transcoded, videos_skipped, audio_transcoded, duration_us)
    VALUES ('hour', substr(OLD.processed_at, 1, 13), OLD.policy_name, -(1), -(OLD.success),
        -(OLD.size_before), -(OLD.size_after), -(OLD.size_change), -(OLD.audio_tracks_removed),
        -(OLD.subtitle_tracks_removed), -(OLD.attachments_removed),
        -((OLD.video_target_codec IS NOT NULL)), -(OLD.video_transcode_skipped),
        -(OLD.audio_tracks_transcoded),
        -(CAST(round(OLD.duration_seconds * 1000000) AS INTEGER)))
    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET runs = runs + excluded.runs,
        successes = successes + excluded.successes,
        size_before = size_before + excluded.size_before,
        size_after = size_after + excluded.size_after,
        size_saved = size_saved + excluded.size_saved,
        audio_removed = audio_removed + excluded.audio_removed,
        subtitles_removed = subtitles_removed + excluded.subtitles_removed,
        attachments_removed = attachments_removed + excluded.attachments_removed,
        videos_transcoded = videos_transcoded + excluded.videos_transcoded,
        videos_skipped = videos_skipped + excluded.videos_skipped,
        audio_transcoded = audio_transcoded + excluded.audio_transcoded,
        duration_us = duration_us + excluded.duration_us;
    DELETE FROM stats_rollups WHERE span = 'hour' AND bucket = substr(OLD.processed_at, 1, 13)
        AND policy_name = OLD.policy_name AND runs = 0;
    INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before,
        size_after, size_saved, audio_removed, subtitles_removed, attachments_removed,
        videos_transcoded, videos_skipped, audio_transcoded, duration_us)
    VALUES ('month', substr(NEW.processed_at, 1, 7), NEW.policy_name, +(1), +(NEW.success),
        +(NEW.size_before), +(NEW.size_after), +(NEW.size_change), +(NEW.audio_tracks_removed),
        +(NEW.subtitle_tracks_removed), +(NEW.attachments_removed),
        +((NEW.video_target_codec IS NOT NULL)), +(NEW.video_transcode_skipped),
        +(NEW.audio_tracks_transcoded),
        +(CAST(round(NEW.duration_seconds * 1000000) AS INTEGER)))
    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET runs = runs + excluded.runs,
        successes = successes + excluded.successes,
        size_before = size_before + excluded.size_before,
        size_after = size_after + excluded.size_after,
        size_saved = size_saved + excluded.size_saved,
        audio_removed = audio_removed + excluded.audio_removed,
        subtitles_removed = subtitles_removed + excluded.subtitles_removed,
        attachments_removed = attachments_removed + excluded.attachments_removed,
        videos_transcoded = videos_transcoded + excluded.videos_transcoded,
        videos_skipped = videos_skipped + excluded.videos_skipped,
        audio_transcoded = audio_transcoded + excluded.audio_transcoded,
        duration_us = duration_us + excluded.duration_us;
    INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before,
        size_after, size_saved, audio_removed, subtitles_removed, attachments_removed,
        videos_transcoded, videos_skipped, audio_transcoded, duration_us)
    VALUES ('day', substr(NEW.processed_at, 1, 10), NEW.policy_name, +(1), +(NEW.success),
        +(NEW.size_before), +(NEW.size_after), +(NEW.size_change), +(NEW.audio_tracks_removed),
        +(NEW.subtitle_tracks_removed), +(NEW.attachments_removed),
        +((NEW.video_target_codec IS NOT NULL)), +(NEW.video_transcode_skipped),
        +(NEW.audio_tracks_transcoded),
        +(CAST(round(NEW.duration_seconds * 1000000) AS INTEGER)))
    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET runs = runs + excluded.runs,
        successes = successes + excluded.successes,
        size_before = size_before + excluded.size_before,
        size_after = size_after + excluded.size_after,
        size_saved = size_saved + excluded.size_saved,
        audio_removed = audio_removed + excluded.audio_removed,
        subtitles_removed = subtitles_removed + excluded.subtitles_removed,
        attachments_removed = attachments_removed + excluded.attachments_removed,
        videos_transcoded = videos_transcoded + excluded.videos_transcoded,
        videos_skipped = videos_skipped + excluded.videos_skipped,
        audio_transcoded = audio_transcoded + excluded.audio_transcoded,
        duration_us = duration_us + excluded.duration_us;
    INSERT INTO stats_rollups (span, bucket, policy_name, runs, successes, size_before,
        size_after, size_saved, audio_removed, subtitles_removed, attachments_removed,
        videos_transcoded, videos_skipped, audio_transcoded, duration_us)
    VALUES ('hour', substr(NEW.processed_at, 1, 13), NEW.policy_name, +(1), +(NEW.success),
        +(NEW.size_before), +(NEW.size_after), +(NEW.size_change), +(NEW.audio_tracks_removed),
        +(NEW.subtitle_tracks_removed), +(NEW.attachments_removed),
        +((NEW.video_target_codec IS NOT NULL)), +(NEW.video_transcode_skipped),
        +(NEW.audio_tracks_transcoded),
        +(CAST(round(NEW.duration_seconds * 1000000) AS INTEGER)))
    ON CONFLICT (span, bucket, policy_name) DO UPDATE SET runs = runs + excluded.runs,
        successes = successes + excluded.successes,
        size_before = size_before + excluded.size_before,
        size_after = size_after + excluded.size_after,
        size_saved = size_saved + excluded.size_saved,
        audio_removed = audio_removed + excluded.audio_removed,
        subtitles_removed = subtitles_removed + excluded.subtitles_removed,
        attachments_removed = attachments_removed + excluded.attachments_removed,
        videos_transcoded = videos_transcoded + excluded.videos_transcoded,
        videos_skipped = videos_skipped + excluded.videos_skipped,
        audio_transcoded = audio_transcoded + excluded.audio_transcoded,
        duration_us = duration_us + excluded.duration_us;
END;

DROP INDEX idx_stats_file;
CREATE INDEX idx_stats_file ON processing_stats(file_id, processed_at);
DROP INDEX idx_stats_policy;
CREATE INDEX idx_stats_policy ON processing_stats(policy_name, processed_at);
DROP INDEX idx_stats_success;
CREATE INDEX idx_stats_success ON processing_stats(success, processed_at);
"""

# Version 5: which tool call did each action (docs/statistics.md). One call does all of a
# phase's actions and each records the call's whole time, so reports count a (stats_id,
# tool_call) once. NULL for rows recorded before: their call is not known.
V5_ACTION_TOOL_CALLS = """
ALTER TABLE action_results ADD COLUMN tool TEXT;
ALTER TABLE action_results ADD COLUMN tool_call INTEGER CHECK (tool_call IS NULL OR tool_call >= 1);
"""

# Version 6: what `vpo serve --watch` has settled (docs/statistics.md): a file at this size
# and mtime was run with the policy of this digest, so the next pass only stats it. A
# failed run settles its file too: it is retried only when the file changes.
V6_WATCH_FILES = """
CREATE TABLE watch_files (
    path TEXT PRIMARY KEY,
    policy_digest TEXT NOT NULL,
    size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0),
    mtime_ns INTEGER NOT NULL,
    success INTEGER NOT NULL CHECK (success IN (0, 1)),
    stats_id TEXT,
    settled_at TEXT NOT NULL
) WITHOUT ROWID;
"""

# Version 7: the worker — the host that ran each run (docs/statistics.md), so runs can be
# counted per worker (`vpo stats workers`). NULL for runs recorded before: their host is
# not known. The index serves a worker's runs in a window in time order.
V7_RUN_WORKERS = """
ALTER TABLE processing_stats ADD COLUMN worker TEXT;
CREATE INDEX idx_stats_worker ON processing_stats(worker, processed_at);
"""

# Version 8: runs are added to the statistics rollups by the writer, once per write
# (vpo.db.rollups), instead of by a trigger once per row: three upserts per run were
# about a tenth of the OTLP ingest's cost of a run (docs/benchmarks.md). Deleting and
# updating runs keep their triggers of version 4.
V8_ROLLUPS_PER_WRITE = """
DROP TRIGGER stats_rollups_insert;
"""
