"""``rotbook fetch-photos`` against a fake raw.githubusercontent.com (urlopen and the reachability probe mocked)."""

import csv
import io
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from rotcore import data, photo_fetch, runner

HEADER = ("file", "source", "source_path", "orig_width", "orig_height", "orig_format", "width", "height",
          "license", "credit", "notes", "suggested_split")
COCO128 = "GitHub lightly-ai/coco128_yolo@6d6f7a0"
MINI = "GitHub Obmutescence/COCO-MINI@644f29e"
ROWS = [
    # file, source, source_path, orig w, h, stored w, h, split
    ("coco128-a.jpg", COCO128, "images/train2017/a.jpg", 640, 426, 512, 341, "train"),
    ("coco128-b.jpg", COCO128, "images/val2017/b.jpg", 300, 200, 300, 200, "val"),       # served as PNG
    ("cocomini-c.jpg", MINI, "val2017/c.jpg", 427, 640, 342, 512, "val"),                 # EXIF-rotated JPEG
    ("cocomini-d.jpg", MINI, "train2017/d.jpg", 640, 480, 512, 384, "train"),             # the server fails
    ("lxqt-e.jpg", "Debian package lxqt-themes 1.2.0-1", "usr/share/e.jpg", 1920, 1080, 512, 288, "train"),
    ("skimage-f.jpg", "PyPI package scikit-image 0.26.0", "skimage/data/f.png", 512, 512, 512, 512, "val"),
]
FULL = {"coco128_yolo": "6d6f7a059ea63efffdbe48aca2d52c04d4c510e9",
        "COCO-MINI": "644f29e7c1d2eefd9c4412d39bc5b0ee6fd0afd4"}


def write_manifest(path: Path, rows=ROWS) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\r\n")
        w.writerow(HEADER)
        for file, source, spath, ow, oh, sw, sh, split in rows:
            w.writerow([file, source, spath, ow, oh, "JPEG", sw, sh, "CC-BY-2.0", '"Someone"', "", split])
    return path


def image_bytes(w: int, h: int, fmt: str, *, orientation: int | None = None) -> bytes:
    im = Image.new("RGB", (w, h))
    im.paste((200, 30, 30), (0, 0, w, h // 2))  # red on top: "up"
    buf = io.BytesIO()
    if orientation is None:
        im.save(buf, fmt)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, fmt, exif=exif.tobytes())
    return buf.getvalue()


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FakeServer:
    """Serves the rows of ROWS by URL; ``d.jpg`` raises (until ``fail`` is emptied)."""

    def __init__(self):
        self.calls: list[str] = []
        self.fail = {"train2017/d.jpg"}
        self.files = {
            "images/train2017/a.jpg": image_bytes(640, 426, "JPEG"),
            "images/val2017/b.jpg": image_bytes(300, 200, "PNG"),
            # stored 640 wide × 427 high, EXIF orientation 6 (rotate 90° clockwise to view): upright 427 × 640
            "val2017/c.jpg": image_bytes(640, 427, "JPEG", orientation=6),
            "train2017/d.jpg": image_bytes(640, 480, "JPEG"),
        }

    def __call__(self, url, timeout=None):
        self.calls.append(url)
        assert timeout is not None, "every download needs a timeout"
        prefix = "https://raw.githubusercontent.com/"
        assert url.startswith(prefix)
        owner, repo, commit, path = url[len(prefix):].split("/", 3)
        assert commit == FULL[repo], "the URL uses the full commit hash"
        if path in self.fail:
            raise urllib.error.URLError("connection reset by peer")
        if path not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return FakeResponse(self.files[path])


@pytest.fixture
def online(monkeypatch):
    for var in ("ROTBOOK_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(photo_fetch, "probe", lambda *a, **k: True)
    server = FakeServer()
    monkeypatch.setattr(urllib.request, "urlopen", server)
    return server


@pytest.fixture
def manifest(tmp_path):
    return write_manifest(tmp_path / "manifest.tsv")


def no_network(*a, **k):
    raise AssertionError("the network was used")


def test_fetch_downloads_resizes_and_writes_a_manifest_of_present_rows(online, manifest, tmp_path):
    dest = tmp_path / "photos"
    logged = []
    counts = photo_fetch.fetch_photos(dest, manifest=manifest, log=logged.append)
    assert {k: counts[k] for k in ("rows", "downloadable", "selected", "skipped_other_source", "already_present",
                                   "downloaded", "failed", "missing", "in_manifest")} == {
        "rows": 6, "downloadable": 4, "selected": 4, "skipped_other_source": 2, "already_present": 0,
        "downloaded": 3, "failed": 1, "missing": 1, "in_manifest": 3}
    assert list(counts["failures"]) == ["cocomini-d.jpg"] and "connection reset" in counts["failures"]["cocomini-d.jpg"]
    assert sum("skipped 2 rows from other sources (Debian package, PyPI package)" in m for m in logged) == 1
    assert any(m.startswith("failed: cocomini-d.jpg: URLError") for m in logged)

    assert sorted(p.name for p in dest.iterdir()) == ["MANIFEST.tsv", "coco128-a.jpg", "coco128-b.jpg",
                                                      "cocomini-c.jpg"]
    for file, _, _, _, _, w, h, _ in ROWS[:3]:
        with Image.open(dest / file) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (w, h)
            assert not im.getexif()
    with Image.open(dest / "cocomini-c.jpg") as im:  # EXIF 6: rotated 90° clockwise, the stored top is now right
        assert im.getpixel((40, 256))[0] < 60 and im.getpixel((300, 256))[0] > 150

    with open(dest / "MANIFEST.tsv", newline="") as f:
        written = list(csv.DictReader(f, delimiter="\t"))
    assert [r["file"] for r in written] == ["coco128-a.jpg", "coco128-b.jpg", "cocomini-c.jpg"]
    assert written[0]["credit"] == '"Someone"' and tuple(written[0]) == HEADER
    records = data.photo_records(dest)
    assert [(r.path.name, r.split, r.source) for r in records] == [
        ("coco128-a.jpg", "train", COCO128), ("coco128-b.jpg", "val", COCO128), ("cocomini-c.jpg", "val", MINI)]


def test_second_run_downloads_nothing_and_a_retry_completes(online, manifest, tmp_path, monkeypatch):
    dest = tmp_path / "photos"
    photo_fetch.fetch_photos(dest, manifest=manifest, log=lambda m: None)
    first = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    online.calls.clear()
    counts = photo_fetch.fetch_photos(dest, manifest=manifest, log=lambda m: None)
    assert online.calls == [online.calls[0]] and online.calls[0].endswith("/train2017/d.jpg")  # only the failed one
    assert counts["already_present"] == 3 and counts["downloaded"] == 0 and counts["failed"] == 1
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == first  # present files untouched

    online.fail.clear()
    online.calls.clear()
    counts = photo_fetch.fetch_photos(dest, manifest=manifest, log=lambda m: None)
    assert counts["downloaded"] == 1 and counts["missing"] == 0 and counts["in_manifest"] == 4
    assert len(online.calls) == 1 and not list(dest.glob("*.part"))

    online.calls.clear()
    monkeypatch.setenv("ROTBOOK_OFFLINE", "1")  # all present: no network is needed, so offline is fine
    counts = photo_fetch.fetch_photos(dest, manifest=manifest, log=lambda m: None)
    assert online.calls == [] and counts["missing"] == 0 and counts["already_present"] == 4


def test_cli_exit_codes_and_messages(online, manifest, tmp_path, capsys):
    dest = tmp_path / "photos"
    assert runner.main(["fetch-photos", "--dest", str(dest), "--manifest", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert "rotbook fetch-photos: 3 of 4 downloadable photos present" in err
    assert "failed: cocomini-d.jpg" in err and "Traceback" not in err
    assert "skipped 2 rows from other sources" in err

    online.fail.clear()
    assert runner.main(["fetch-photos", "--dest", str(dest), "--manifest", str(manifest)]) == 0
    assert "4 of 4 downloadable photos present" in capsys.readouterr().err

    other = tmp_path / "two"
    assert runner.main(["fetch-photos", "--dest", str(other), "--manifest", str(manifest), "--limit", "2"]) == 0
    assert sorted(p.name for p in other.glob("*.jpg")) == ["coco128-a.jpg", "coco128-b.jpg"]
    assert runner.main(["fetch-photos", "--limit", "-1"]) == 2
    assert runner.main(["fetch-photos", "--dest", str(other), "--manifest", str(tmp_path / "nope.tsv")]) == 2
    assert "cannot read the manifest" in capsys.readouterr().err


def test_cli_default_dest_is_rotbook_data_photos(online, manifest, tmp_path, monkeypatch):
    monkeypatch.setenv("ROTBOOK_DATA", str(tmp_path / "data"))
    online.fail.clear()
    assert runner.main(["fetch-photos", "--manifest", str(manifest)]) == 0
    assert len(data.photo_records()) == 4
    assert data.photos_root() == tmp_path / "data" / "photos"


@pytest.mark.parametrize("flag", ["ROTBOOK_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_flag_exits_2_without_network(flag, manifest, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ROTBOOK_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(flag, "1")
    monkeypatch.setattr(photo_fetch, "probe", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    dest = tmp_path / "photos"
    assert runner.main(["fetch-photos", "--dest", str(dest), "--manifest", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert f"{flag} is set" in err and "ROTBOOK_DATA" in err and "Traceback" not in err and "skipped" not in err
    assert not dest.exists()


def test_unreachable_host_exits_2(manifest, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ROTBOOK_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(photo_fetch, "probe", lambda *a, **k: False)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert runner.main(["fetch-photos", "--dest", str(tmp_path / "p"), "--manifest", str(manifest)]) == 2
    assert "raw.githubusercontent.com cannot be reached within 3 s" in capsys.readouterr().err


def test_probe_reports_a_refused_connection(monkeypatch):
    def refuse(*a, **k):
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(photo_fetch.socket, "create_connection", refuse)
    assert photo_fetch.probe(timeout_s=0.5) is False


def test_a_wrong_image_is_a_failure_not_a_crash(online, tmp_path):
    online.files["images/train2017/a.jpg"] = image_bytes(100, 400, "JPEG")  # not 640×426
    online.files["images/val2017/b.jpg"] = b"not an image"
    m = write_manifest(tmp_path / "m.tsv", ROWS[:2])
    counts = photo_fetch.fetch_photos(tmp_path / "p", manifest=m, log=lambda msg: None)
    assert counts["failed"] == 2 and counts["missing"] == 2 and counts["in_manifest"] == 0
    assert "does not resize" in counts["failures"]["coco128-a.jpg"]
    assert "UnidentifiedImageError" in counts["failures"]["coco128-b.jpg"]


def test_packaged_manifest():
    columns, rows = photo_fetch.read_manifest()
    assert tuple(columns) == HEADER and len(rows) == 492
    github = [photo_fetch.github_source(r["source"]) for r in rows]
    assert sum(g is not None for g in github) == 445
    assert {g for g in github if g} == set(photo_fetch.FULL_COMMITS)  # every repo@hash has its full hash
    assert all(max(int(r["width"]), int(r["height"])) <= 512 for r in rows)
    assert photo_fetch.raw_url(rows[0]) == ("https://raw.githubusercontent.com/lightly-ai/coco128_yolo/"
                                            "6d6f7a059ea63efffdbe48aca2d52c04d4c510e9/images/train2017/000000000025.jpg")
    shipped = data.photos_root() / "MANIFEST.tsv"
    if shipped.is_file():
        assert photo_fetch.PACKAGED_MANIFEST.read_bytes() == shipped.read_bytes()


def test_manifest_of_a_complete_folder_matches_the_shipped_one(tmp_path, monkeypatch):
    """With every photo present (links to the offline copies), the written manifest is the shipped file."""
    shipped = data.photos_root()
    if not (shipped / "MANIFEST.tsv").is_file():
        pytest.skip("no offline photos folder ($ROTBOOK_DATA/photos)")
    monkeypatch.setenv("ROTBOOK_OFFLINE", "1")
    dest = tmp_path / "photos"
    dest.mkdir()
    for p in shipped.glob("*.jpg"):
        (dest / p.name).symlink_to(p)
    counts = photo_fetch.fetch_photos(dest, log=lambda m: None)
    assert counts["missing"] == 0 and counts["in_manifest"] == 492
    assert (dest / "MANIFEST.tsv").read_bytes() == (shipped / "MANIFEST.tsv").read_bytes()
