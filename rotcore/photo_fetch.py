"""``rotbook fetch-photos``: rebuild the photo folder of studies 02 and 04 from the sources its manifest names.

    rotbook fetch-photos                         # into $ROTBOOK_DATA/photos, with the manifest shipped in rotcore
    rotbook fetch-photos --dest photos/ --limit 20
    rotbook fetch-photos --manifest MANIFEST.tsv --dest photos/

Rows whose ``source`` is ``GitHub <owner>/<repo>@<commit>`` (the COCO-2017 photos, 445 of 492) are downloaded
from ``https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<source_path>``, turned upright from their
EXIF orientation, converted to RGB, resized to the manifest's ``width`` × ``height`` (long side <= 512, Lanczos)
and saved as JPEG (quality 85, progressive, optimized) under the manifest's ``file`` name, as the shipped
copies were made. The manifest gives short commit hashes; :data:`FULL_COMMITS` maps the two repositories'
hashes to the full ones (checked against the repositories' history), and any other hash goes into the URL
as the manifest spells it (GitHub may need the full hash there). Rows from Debian or PyPI packages are
skipped with one summary line: they come from package archives, not from a URL.

Files already present are kept, so an interrupted run resumes. A file that fails is reported and counted,
and the run goes on. The destination gets a ``MANIFEST.tsv`` with the manifest's rows for the photos that
are present, so :func:`rotcore.data.photo_records` keeps the suggested train/val split by photo.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

from rotcore import paths

#: The manifest shipped inside the package (a copy of ``$ROTBOOK_DATA/photos/MANIFEST.tsv``).
PACKAGED_MANIFEST = Path(__file__).resolve().parent / "data_files" / "photos_MANIFEST.tsv"
MANIFEST_NAME = "MANIFEST.tsv"
REQUIRED_COLUMNS = ("file", "source", "source_path", "width", "height", "suggested_split")
RAW_HOST = "raw.githubusercontent.com"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
#: The manifest's short hashes -> the full commit hashes (``git rev-parse`` in clones of both repositories).
FULL_COMMITS = {
    ("lightly-ai/coco128_yolo", "6d6f7a0"): "6d6f7a059ea63efffdbe48aca2d52c04d4c510e9",
    ("Obmutescence/COCO-MINI", "644f29e"): "644f29e7c1d2eefd9c4412d39bc5b0ee6fd0afd4",
}
PROBE_TIMEOUT_S = 3.0
DOWNLOAD_TIMEOUT_S = 30.0
JPEG_OPTIONS = {"quality": 85, "progressive": True, "optimize": True}
_GITHUB = re.compile(r"^GitHub\s+([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)@([0-9a-fA-F]{7,40})$")


class PhotosOfflineError(paths.MissingDataError):
    """Photos are missing and cannot be downloaded here (offline flag set, or the host is unreachable)."""


class ManifestError(ValueError):
    """The manifest cannot be read or lacks a column this tool needs."""


def offline_flag() -> str | None:
    """The name of the first of ``ROTBOOK_OFFLINE``, ``HF_HUB_OFFLINE`` set to a true value, else ``None``."""
    for var in ("ROTBOOK_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


def probe(host: str = RAW_HOST, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host:443`` opens within ``timeout_s`` (name lookup included)."""
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout_s).close()
            result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout_s)
    return bool(result and result[0])


def default_dest() -> Path:
    """``$ROTBOOK_DATA/photos`` (:func:`rotcore.paths.data_root`, default ``<checkout>/data``)."""
    return paths.data_root() / "photos"


def read_manifest(path: str | Path | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """The manifest's column names and rows (``path`` or :data:`PACKAGED_MANIFEST`)."""
    path = Path(path) if path is not None else PACKAGED_MANIFEST
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t")
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ManifestError(f"cannot read the manifest {path}: {err}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(f"the manifest {path} lacks the column(s) {', '.join(missing)}")
    return columns, rows


def github_source(source: str) -> tuple[str, str] | None:
    """``"GitHub owner/repo@abc1234"`` -> ``("owner/repo", "abc1234")``; ``None`` for any other source."""
    m = _GITHUB.match(source.strip())
    return (m.group(1), m.group(2)) if m else None


def raw_url(row: dict[str, str]) -> str:
    """The raw.githubusercontent.com URL of a GitHub row (full commit hash where :data:`FULL_COMMITS` has it)."""
    parsed = github_source(row["source"])
    if parsed is None:
        raise ValueError(f"{row['file']}: source {row['source']!r} is not a GitHub repository")
    repo, commit = parsed
    commit = FULL_COMMITS.get((repo, commit), commit)
    path = urllib.request.quote(row["source_path"].strip().lstrip("/"))
    return RAW_URL.format(repo=repo, commit=commit, path=path)


def _present(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def convert(data: bytes, width: int, height: int) -> bytes:
    """Downloaded image bytes -> the stored JPEG: upright (EXIF), RGB, ``width`` × ``height`` (Lanczos)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        im = ImageOps.exif_transpose(im).convert("RGB")
    w, h = im.size
    # The aspect ratio must match the manifest's stored size (up to rounding): another image would not.
    if abs(round(h * width / w) - height) > 2:
        raise ValueError(f"the image is {w}×{h}, which does not resize to the manifest's {width}×{height}")
    if (w, h) != (width, height):
        im = im.resize((width, height), Image.LANCZOS)
    out = io.BytesIO()
    im.save(out, "JPEG", **JPEG_OPTIONS)
    return out.getvalue()


def download(url: str, *, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read()


def write_manifest(dest: Path, columns: list[str], rows: list[dict[str, str]]) -> int:
    """``dest/MANIFEST.tsv`` with the rows whose file is in ``dest`` (unchanged files are not rewritten)."""
    present = [r for r in rows if _present(dest / r["file"])]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, delimiter="\t", lineterminator="\r\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(present)
    blob = buf.getvalue().encode("utf-8")
    target = dest / MANIFEST_NAME
    if target.is_file() and target.read_bytes() == blob:  # e.g. a complete, read-only data folder
        return len(present)
    tmp = dest / (MANIFEST_NAME + ".part")
    tmp.write_bytes(blob)
    os.replace(tmp, target)
    return len(present)


def _progress_enabled() -> bool:
    return os.environ.get("ROTBOOK_PROGRESS", "1") != "0"


def fetch_photos(dest: str | Path, *, manifest: str | Path | None = None, limit: int | None = None,
                 log: Callable[[str], None] | None = None) -> dict:
    """Download the manifest's GitHub photos missing from ``dest`` and write ``dest/MANIFEST.tsv``.

    ``manifest``: a MANIFEST.tsv (default: :data:`PACKAGED_MANIFEST`); ``limit``: only the first ``limit``
    downloadable rows. ``log`` gets the summary lines and one line per failed file (default: stderr).

    Returns counts: ``rows``, ``downloadable`` (GitHub rows), ``selected`` (after ``limit``),
    ``skipped_other_source``, ``already_present``, ``downloaded``, ``failed``, ``missing`` (selected rows
    not in ``dest`` at the end), ``in_manifest`` (rows written to ``dest/MANIFEST.tsv``), plus
    ``failures`` (file name -> error). Raises :class:`PhotosOfflineError` when files are missing and the
    network is off (``ROTBOOK_OFFLINE``/``HF_HUB_OFFLINE``) or raw.githubusercontent.com is unreachable,
    before anything is written; :class:`ManifestError` for an unreadable manifest.
    """
    from tqdm.auto import tqdm

    if log is None:
        def log(msg: str) -> None:
            tqdm.write(msg, file=sys.stderr)

    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    dest = Path(dest).expanduser()
    columns, rows = read_manifest(manifest)
    github = [r for r in rows if github_source(r["source"])]
    others = [r for r in rows if not github_source(r["source"])]
    selected = github if limit is None else github[:limit]
    todo = [r for r in selected if not _present(dest / r["file"])]
    counts = {"rows": len(rows), "downloadable": len(github), "selected": len(selected),
              "skipped_other_source": len(others), "already_present": len(selected) - len(todo),
              "downloaded": 0, "failed": 0, "missing": len(todo), "in_manifest": 0, "failures": {}}
    if todo:
        hint = (f"{len(todo)} photos are missing in {dest}. Point ROTBOOK_DATA at a folder that has photos/ "
                f"(e.g. ../shared/data), or run `rotbook fetch-photos` where {RAW_HOST} can be reached")
        flag = offline_flag()
        if flag:
            raise PhotosOfflineError(f"{flag} is set, so nothing is downloaded. {hint} (with {flag} unset).")
        if not probe():
            raise PhotosOfflineError(f"{RAW_HOST} cannot be reached within {PROBE_TIMEOUT_S:g} s. {hint}.")
    if others:
        kinds = sorted({" ".join(r["source"].split()[:2]) for r in others})
        log(f"skipped {len(others)} rows from other sources ({', '.join(kinds)}): they come from package "
            "archives, not a URL; copy them from a folder that has the photos if you need them")
    dest.mkdir(parents=True, exist_ok=True)
    bar = tqdm(todo, desc="fetch-photos", unit="photo", file=sys.stderr, disable=not _progress_enabled() or not todo)
    for row in bar:
        name = row["file"]
        target = dest / name
        tmp = dest / (name + ".part")
        try:
            url = raw_url(row)
            jpeg = convert(download(url), int(row["width"]), int(row["height"]))
            tmp.write_bytes(jpeg)
            os.replace(tmp, target)
            counts["downloaded"] += 1
        except Exception as err:  # noqa: BLE001 (reported per file; the run goes on)
            tmp.unlink(missing_ok=True)
            message = f"{type(err).__name__}: {err}"
            counts["failed"] += 1
            counts["failures"][name] = message
            log(f"failed: {name}: {message}")
    bar.close()
    counts["missing"] = sum(not _present(dest / r["file"]) for r in selected)
    counts["in_manifest"] = write_manifest(dest, columns, rows)
    return counts


def summary(counts: dict, dest: Path) -> str:
    line = (f"{counts['selected'] - counts['missing']} of {counts['selected']} downloadable photos present in {dest} "
            f"(downloaded {counts['downloaded']}, already there {counts['already_present']}, failed "
            f"{counts['failed']}); {MANIFEST_NAME} lists {counts['in_manifest']}")
    if counts["failed"]:
        line += ". Rerun to retry the failed files (present files are kept)"
        if all("404" in m for m in counts["failures"].values()):
            line += "; if every file is a 404, the commit hash in the URL may need to be the full one " \
                    "(rotcore.photo_fetch.FULL_COMMITS)"
    return line
