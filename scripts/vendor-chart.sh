#!/usr/bin/env bash
# Re-vendor Chart.js for the dashboard page (src/vpo/server/static/vendor/): the page must
# work with no network, so the library ships inside the package as one file, pinned to an
# exact version, with its licence beside it. Run after changing VERSION; review the diff.
# Needs npm (Debian: apt-get install npm). Prints the sha256 of what it copied.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${1:-4.6.1}"
DEST=src/vpo/server/static/vendor

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "chart.js@$VERSION" >/dev/null)
tar -xzf "$work"/chart.js-"$VERSION".tgz -C "$work"
# The UMD build defines the global `Chart` and needs no module loader or bundler.
cp "$work/package/dist/chart.umd.min.js" "$DEST/chart.umd.min.js"
cp "$work/package/LICENSE.md" "$DEST/chart.js.LICENSE.md"
echo "$VERSION" >"$DEST/chart.js.VERSION"
sha256sum "$DEST/chart.umd.min.js" "$DEST/chart.js.LICENSE.md"
