#!/usr/bin/env bash
# What `make browser-check` needs beyond the venv: Debian's chromium and chromium-driver (a test tool's own
# browser download does not work offline), and selenium in the venv. Installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ROTBOOK_VENV:-.venv}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "[browser-setup] apt: chromium chromium-driver"
  as_root apt-get -qq update >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get -qq install -y --no-install-recommends chromium chromium-driver >/dev/null
fi
if ! "$VENV/bin/python" -c "import selenium" 2>/dev/null; then
  echo "[browser-setup] pip: selenium"
  "$VENV/bin/python" -m pip install -q --progress-bar off "selenium>=4.20" 2>&1 | grep -v "is ignored" || true
fi
