#!/usr/bin/env bash
# make screenshots: SVG + PNG of every tab from a real run (see scripts/screenshots.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    need=()
    command -v rsvg-convert >/dev/null 2>&1 || need+=(librsvg2-bin)
    fc-list 2>/dev/null | grep -qi "fira code" || need+=(fonts-firacode)
    if [ ${#need[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
fi
exec .venv/bin/python scripts/screenshots.py
