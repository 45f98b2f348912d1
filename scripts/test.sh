#!/usr/bin/env bash
# The test command: set up, lint, run the whole suite (unit, then integration with the
# real ffmpeg, mkvtoolnix and SQLite). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"
