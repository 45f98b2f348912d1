#!/usr/bin/env bash
# Set up VPO on Debian: the system packages it drives, then a virtual environment
# (.venv) with VPO installed editable with its dev extra. Safe to run again: it only
# installs what is missing. Needs Python >= 3.11 (set PYTHON to choose one).
set -euo pipefail
cd "$(dirname "$0")/.."

# command or file that proves a package is there -> Debian package
declare -A NEEDS=(
    [ffprobe]=ffmpeg
    [ffmpeg]=ffmpeg
    [mkvmerge]=mkvtoolnix
    [mkvpropedit]=mkvtoolnix
    [/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf]=fonts-dejavu-core
    [promtool]=prometheus  # promtool checks the /metrics exposition in the tests
    [strace]=strace  # the tests stop a tool at a chosen write
    [wrk]=wrk  # load generator of benchmarks/bench_server.py (it falls back to aiohttp)
    [chromium]=chromium  # the dashboard tests drive the real page
    [redis-server]=redis-server  # the queue tests start a real Redis
    [ip]=iproute2  # a queue test puts the workers in a network namespace of their own
)

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null; then
    echo "setup: $PYTHON not found; install Python 3.11 or newer (sudo apt-get install python3 python3-venv)." >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: VPO needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1)." >&2
    exit 1
fi

missing=()
for need in "${!NEEDS[@]}"; do
    if [[ "$need" == /* ]]; then [[ -e "$need" ]] && continue; else command -v "$need" >/dev/null && continue; fi
    pkg="${NEEDS[$need]}"
    [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
done
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=("python3-venv")
fi

if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "setup: installing Debian packages: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "setup: VPO needs these Debian packages; run this, then run the command again:" >&2
        echo "    sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
fi

if [[ ! -x .venv/bin/python ]]; then
    echo "setup: creating the virtual environment .venv" >&2
    "$PYTHON" -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp=.venv/.vpo-installed
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
    echo "setup: installing VPO and its dev tools into .venv" >&2
    log=.venv/pip-install.log
    if ! { .venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install -e '.[dev]'; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "setup: installing VPO failed; the whole log is in $log" >&2
        exit 1
    fi
    touch "$stamp"
fi
