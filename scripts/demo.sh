#!/usr/bin/env bash
# The main job on an embedded default: set up, make sample media, scan it, process it
# with the example policies, show what the runs did (vpo stats summary, vpo stats policy),
# then serve the API and /metrics while watching the demo library (vpo serve --watch).
# Everything lands in .demo/ (media and database), never in your own library.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

DEMO="${VPO_DEMO_DIR:-.demo}"
export VPO_DB="$DEMO/library.db"
vpo=.venv/bin/vpo

$vpo doctor
echo
$vpo samples make "$DEMO/library"
echo
$vpo scan "$DEMO/library"
echo
$vpo inspect "$DEMO/library/movie-h264-multilang.mkv"
echo
$vpo process --policy examples/policies/cleanup-organize.yaml "$DEMO/library"
echo
$vpo process --policy examples/policies/hevc-transcode.yaml --jobs 2 "$DEMO/library"
echo
$vpo inspect "$DEMO/library/movie-h264-multilang.mkv"
echo
echo "Demo library: $DEMO/library   database: $VPO_DB"
echo
$vpo stats summary
echo
$vpo stats policy
echo

# Last, the service: the statistics API and /metrics, with the demo library watched so a
# video dropped into it is processed within two passes. VPO_DEMO_NO_SERVE=1 stops here.
if [[ "${VPO_DEMO_NO_SERVE:-0}" == 1 ]]; then
    echo "VPO_DEMO_NO_SERVE=1: vpo serve not started."
    exit 0
fi
echo "Starting vpo serve, watching $DEMO/library with language-cleanup every 10 s."
echo "Copy a video into $DEMO/library and watch it appear in /api/stats/recent. Ctrl-C stops it."
exec $vpo serve --port "${VPO_DEMO_PORT:-8321}" --watch "$DEMO/library" \
    --policy examples/policies/language-cleanup.yaml --interval 10
