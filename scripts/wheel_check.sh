#!/usr/bin/env bash
# Colab stand-in: the built wheel in a fresh venv (no editable install, no checkout on sys.path), one smoke
# notebook executed with papermill from a temporary folder outside the repository, ROTBOOK_DATA pointing at
# the offline data. Checks that rotcore is imported from the fresh venv, that the run's outputs land under
# the working folder (as /content on Colab) and that nothing is written into site-packages.
#
# The heavy stack (torch, escnn, papermill, ...) is not reinstalled: a .pth line makes the project venv's
# site-packages visible (its editable-install finder is not processed from a path line, so `import rotcore`
# can only find the wheel).
#
#   bash scripts/wheel_check.sh [NN]     # default study 05
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
VENV=${ROTBOOK_VENV:-.venv}
study=${1:-05}
nb=$(ls notebooks/${study}_*.py | head -1)
tmp=$(mktemp -d /tmp/rotbook-wheel.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
log() { printf '[wheel-check] %s\n' "$*"; }
start=$(date +%s)

log "building the wheel"
# from a copy: setuptools' build/ folder would otherwise sit in the checkout and carry stale modules
mkdir "$tmp/src" && cp -r pyproject.toml README.md rotcore "$tmp/src/"
find "$tmp/src" -name __pycache__ -prune -exec rm -rf {} +
"$VENV/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$tmp/dist" "$tmp/src" >"$tmp/build.log" 2>&1 \
  || { cat "$tmp/build.log"; exit 1; }
wheel=$(ls "$tmp"/dist/rotcore-*.whl)

log "fresh venv: $tmp/venv"
"$VENV/bin/python" -m venv --without-pip "$tmp/venv"
fresh_site=$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
deps_site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$deps_site" > "$fresh_site/zz_rotbook_project_deps.pth"  # after the fresh venv's own packages
"$VENV/bin/python" -m pip --python "$tmp/venv/bin/python" install -q --no-deps "$wheel" 2>&1 | grep -v "is ignored" || true

# the checkout's data folder, as rotcore.paths resolves it there (the working folder below has none beside it)
export ROTBOOK_DATA=${ROTBOOK_DATA:-$("$VENV/bin/python" -c 'from rotcore import paths; print(paths.data_root())')}
work="$tmp/content"
mkdir -p "$work"
cd "$work"
env -u PYTHONPATH -u ROTBOOK_ROOT -u ROTBOOK_RUNS -u ROTBOOK_CACHE "$tmp/venv/bin/python" - "$fresh_site" <<'PY'
import sys
import rotcore, rotcore.paths as p
assert rotcore.__file__.startswith(sys.argv[1]), f"rotcore imported from {rotcore.__file__}, not the wheel"
assert p.project_root() == p.Path.cwd().resolve(), f"project_root() = {p.project_root()}, not the working folder"
print(f"[wheel-check] rotcore {rotcore.__version__} from {rotcore.__file__}; outputs under {p.project_root()}")
PY
touch "$tmp/marker"
log "papermill: $nb on the smoke profile, from $work"
env -u PYTHONPATH -u ROTBOOK_ROOT -u ROTBOOK_RUNS -u ROTBOOK_CACHE PATH="$tmp/venv/bin:$PATH" ROTBOOK_PROGRESS=0 \
  sh -c "python -m jupytext --to ipynb -o - '$repo/$nb' | python -m papermill - out.ipynb -k python3 -p profile smoke --log-level WARNING --no-progress-bar"

results=$(ls "$work"/_build/runs/smoke/results/*.json)
log "results: ${results#$work/}"
written=$(find "$tmp/venv" -newer "$tmp/marker" -type f ! -name '*.pyc' | head -5)
if [ -n "$written" ]; then log "FAIL: the run wrote into the venv: $written"; exit 1; fi
log "ok in $(( $(date +%s) - start )) s"
