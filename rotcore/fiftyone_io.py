"""FiftyOne, kept optional: the photo data set, its exported manifest, and evaluation results written back.

``import fiftyone`` is lazy (it takes seconds and starts a MongoDB); nothing else in rotcore needs it.
Training and evaluation read a **manifest** (a JSON list of photos with source, licence and split), which
:func:`export_manifest` writes from the FiftyOne data set and :func:`write_manifest` writes straight from a
folder, so the same samples reach a machine without FiftyOne (the GPU machine). Registration of
evaluation results (:func:`register_regressions`) runs wherever FiftyOne is installed.

Database location: ``ROTBOOK_FIFTYONE_DB`` if set, else FiftyOne's own ``FIFTYONE_DATABASE_DIR`` if set,
else ``$ROTBOOK_CACHE/fiftyone``. It must be fixed before the first ``import fiftyone`` in a process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from rotcore import paths
from rotcore.data import PhotoRecord, photo_records
from rotcore.metrics import circular_error_deg

MANIFEST_FORMAT = 1
SOURCES = ("folder", "coco-2017")


def database_dir() -> Path:
    """Where FiftyOne's MongoDB keeps its files for rotbook (see the module doc)."""
    env = os.environ.get("ROTBOOK_FIFTYONE_DB") or os.environ.get("FIFTYONE_DATABASE_DIR")
    return Path(env).expanduser().resolve() if env else paths.cache_root() / "fiftyone"


def available() -> tuple[bool, str]:
    """``(True, "")`` if ``fiftyone`` can be imported here, else ``(False, why)``; starts nothing."""
    if importlib.util.find_spec("fiftyone") is None:
        return False, "the fiftyone package is not installed (pip install 'rotcore[fiftyone]')"
    return True, ""


def import_fiftyone():
    """``import fiftyone`` with rotbook's database folder and quiet defaults (no tracking, no progress bars)."""
    ok, why = available()
    if not ok:
        raise ImportError(why)
    os.environ["FIFTYONE_DATABASE_DIR"] = str(database_dir())
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    import fiftyone as fo

    return fo


# ---------------------------------------------------------------------------------------------------------
# Manifests (no FiftyOne needed)


def fingerprint(records: Sequence[PhotoRecord]) -> str:
    """A hash of the photo set: file names, sizes, sources, licences and splits (a changed folder changes it)."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.path.name):
        size = r.path.stat().st_size if r.path.exists() else -1
        h.update(f"{r.path.name}\t{size}\t{r.source}\t{r.license}\t{r.split}\n".encode())
    return h.hexdigest()[:16]


def write_manifest(records: Sequence[PhotoRecord], path: Path, *, dataset: str | None = None) -> Path:
    """Write the photos as a JSON manifest (file names relative to their common folder)."""
    root = Path(os.path.commonpath([str(r.path.parent) for r in records]))
    record = {"format": MANIFEST_FORMAT, "dataset": dataset, "fingerprint": fingerprint(records), "root": str(root),
              "samples": [{"file": str(r.path.relative_to(root)), "source": r.source, "license": r.license,
                           "split": r.split} for r in records]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def read_manifest(path: Path, *, root: Path | None = None) -> list[PhotoRecord]:
    """The photos of a manifest. ``root`` replaces the folder it was written with (another machine)."""
    record = json.loads(Path(path).read_text())
    if record.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: unknown manifest format {record.get('format')!r}")
    base = Path(root) if root is not None else Path(record["root"])
    out = [PhotoRecord(base / s["file"], s["source"], s["license"], s["split"]) for s in record["samples"]]
    missing = [r.path for r in out if not r.path.exists()]
    if missing:
        raise paths.MissingDataError(f"{len(missing)} photos of the manifest {path} are missing, e.g. {missing[0]}; "
                                     "pass root= (or set ROTBOOK_DATA) to the folder that holds them")
    return out


# ---------------------------------------------------------------------------------------------------------
# The persistent photo data set


@dataclasses.dataclass(frozen=True)
class SyncReport:
    name: str
    status: str  # "created", "unchanged" or "updated"
    added: int
    removed: int
    samples: int


def source_records(source: str = "folder", *, root: Path | None = None, max_samples: int | None = None,
                   val_fraction: float = 0.2) -> list[PhotoRecord]:
    """The photos to register: a local folder (default ``$ROTBOOK_DATA/photos``) or, with a network, the
    FiftyOne zoo's ``coco-2017`` validation split (split into train/val by a hash of the file name)."""
    if source not in SOURCES:
        raise ValueError(f"source={source!r}; choose one of {SOURCES}")
    if source == "folder":
        recs = photo_records(root, val_fraction=val_fraction)
        return recs[:max_samples] if max_samples else recs
    import_fiftyone()
    import fiftyone.zoo as foz

    zoo = foz.load_zoo_dataset("coco-2017", split="validation", max_samples=max_samples, label_types=[])
    folder = Path(zoo.first().filepath).parent
    return [r for r in photo_records(folder, val_fraction=val_fraction)
            if r.path in {Path(p) for p in zoo.values("filepath")}]


def sync_photo_dataset(records: Sequence[PhotoRecord], *, name: str = "rotbook-photos",
                       fields: Mapping[str, Sequence[Any]] | None = None):
    """Create or update the persistent FiftyOne data set of ``records``: ``(dataset, SyncReport)``.

    Idempotent: a second call with the same photos adds nothing (``status="unchanged"``); a changed folder
    (added, removed or replaced files, new splits) is detected by :func:`fingerprint` and synced. Each sample
    has ``source``, ``license``, ``split`` and a tag equal to its split. ``fields`` adds per-sample values
    aligned with ``records`` (e.g. ``{"contributor": [...]}`` for a second source; ``None`` where a photo has
    none); they are part of the fingerprint, so a changed value syncs too. Photos from several sources (several
    folders) live in one data set: ``source`` tells them apart.

    Fields are written in bulk (one ``set_values`` per field), so registering thousands of photos takes
    seconds, and an unchanged data set only costs the fingerprint (a ``stat`` per file).
    """
    fo = import_fiftyone()
    extra = {k: list(v) for k, v in (fields or {}).items()}
    for k, v in extra.items():
        if len(v) != len(records):
            raise ValueError(f"field {k!r} has {len(v)} values for {len(records)} photos")
    paths_ = [str(r.path.resolve()) for r in records]
    if len(set(paths_)) != len(paths_):
        raise ValueError("records name the same file twice")
    fp = _fingerprint_with_fields(records, extra)
    if fo.dataset_exists(name):
        ds = fo.load_dataset(name)
        if ds.info.get("fingerprint") == fp and len(ds) == len(records):
            return ds, SyncReport(name, "unchanged", 0, 0, len(ds))
        status = "updated"
    else:
        ds = fo.Dataset(name, persistent=True)
        status = "created"
    columns = {"source": [r.source for r in records], "license": [r.license for r in records],
               "split": [r.split for r in records], **extra}
    row = {p: i for i, p in enumerate(paths_)}
    have = dict(zip(ds.values("filepath"), ds.values("id"))) if len(ds) else {}
    stale = [i for p, i in have.items() if p not in row]
    if stale:
        ds.delete_samples(stale)
    added = [p for p in paths_ if p not in have]
    if added:  # new samples carry their fields from the start
        ds.add_samples([fo.Sample(filepath=p, tags=[records[row[p]].split],
                                  **{k: v[row[p]] for k, v in columns.items()}) for p in added])
    kept = [p for p in paths_ if p in have]
    if kept:  # the photos already there: their fields, in bulk (no Sample objects are held, so none reloads)
        for field, values in columns.items():
            ds.set_values(field, {p: values[row[p]] for p in kept}, key_field="filepath")
        ds.set_values("tags", {p: [records[row[p]].split] for p in kept}, key_field="filepath")
    ds.info["fingerprint"] = fp
    ds.save()
    return ds, SyncReport(name, status, len(added), len(stale), len(ds))


def _fingerprint_with_fields(records: Sequence[PhotoRecord], extra: Mapping[str, Sequence[Any]]) -> str:
    """:func:`fingerprint` of the photos, extended by the extra per-sample fields (unchanged without them)."""
    fp = fingerprint(records)
    if not extra:
        return fp
    h = hashlib.sha256(fp.encode())
    order = sorted(range(len(records)), key=lambda i: records[i].path.name)
    for k in sorted(extra):
        h.update(f"{k}\t{json.dumps([extra[k][i] for i in order])}\n".encode())
    return h.hexdigest()[:16]


def dataset_records(ds) -> list[PhotoRecord]:
    """The photos of a FiftyOne data set built by :func:`sync_photo_dataset`, sorted by file name."""
    rows = zip(ds.values("filepath"), ds.values("source"), ds.values("license"), ds.values("split"))
    return sorted((PhotoRecord(Path(p), s, lic, sp) for p, s, lic, sp in rows), key=lambda r: r.path.name)


def export_manifest(ds, path: Path, *, keep: Callable[[PhotoRecord], bool] | None = None) -> Path:
    """Write the data set's photos (those ``keep`` accepts, e.g. one source) as a manifest: what a machine
    without FiftyOne trains from."""
    records = [r for r in dataset_records(ds) if keep is None or keep(r)]
    if not records:
        raise ValueError(f"no photo of the data set {ds.name!r} passes the filter")
    return write_manifest(records, path, dataset=ds.name)


# ---------------------------------------------------------------------------------------------------------
# Evaluation results


def register_regressions(name: str, image_files: Sequence[Path], true_deg: Sequence[float],
                         predictions: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                         fields: Mapping[str, Sequence[Any]] | None = None,
                         info: Mapping[str, Any] | None = None):
    """(Re)create the data set ``name`` of evaluation images with a ``ground_truth`` angle, one FiftyOne
    ``Regression`` field per model (value = predicted angle in degrees, confidence = vector length) and,
    via ``evaluate_regressions``, a per-sample circular error ``eval_<field>`` to sort by in the App.

    ``predictions`` maps a field name to ``(pred_deg, confidence)``; a ``None`` prediction leaves that sample's
    field empty (its ``eval_<field>`` is then ``None`` too), so one data set can hold images that not every
    model scored. ``fields`` adds plain per-sample values (e.g. the source photo); ``info`` is stored in the data
    set's ``info``. Returns the data set.
    """
    fo = import_fiftyone()
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name, persistent=True)
    samples = []
    for i, f in enumerate(image_files):
        s = fo.Sample(filepath=str(Path(f).resolve()), ground_truth=fo.Regression(value=float(true_deg[i])))
        for key, values in (fields or {}).items():
            s[key] = values[i]
        for field, (pred, conf) in predictions.items():
            if pred[i] is not None:
                s[field] = fo.Regression(value=float(pred[i]), confidence=float(conf[i]))
        samples.append(s)
    ds.add_samples(samples)
    if info:
        ds.info.update(info)
        ds.save()
    for field in predictions:
        ds.evaluate_regressions(field, gt_field="ground_truth", eval_key=f"eval_{field}", metric=circular_error)
    return ds


def circular_error(pred_deg: float, true_deg: float) -> float:
    """FiftyOne's per-sample error metric (two scalars ``(ypred, ytrue)``): :func:`rotcore.metrics.circular_error_deg`."""
    return circular_error_deg(torch.tensor(float(pred_deg), dtype=torch.float64),
                              torch.tensor(float(true_deg), dtype=torch.float64)).item()


def launch_app_if_interactive(ds) -> bool:
    """Open the FiftyOne App on ``ds`` only in an interactive session (never in papermill or CI)."""
    import sys

    if "ipykernel" not in sys.modules or os.environ.get("PAPERMILL_EXECUTION") or os.environ.get("CI"):
        return False
    fo = import_fiftyone()
    fo.launch_app(ds)
    return True
