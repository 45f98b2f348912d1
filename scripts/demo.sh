#!/usr/bin/env bash
# The main job on an embedded default: set up, make sample media, scan it, process it
# with the example policies, and show what the runs did (vpo stats summary, vpo stats policy).
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
