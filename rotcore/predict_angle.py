"""``rotbook predict-angle CHECKPOINT PATH...``: straighten photos with a trained study-04 angle model.

Loads a ``fit`` checkpoint of study 04, reads image files, predicts each one's rotation and abstains below
the confidence threshold that :func:`rotcore.angle_tool.write_card` chose on the validation photos.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from rotcore.angle_tool import CARD, read_card, shown_path

# ``rotbook predict-angle`` (``rotcore.runner``) is a thin shell around :func:`load_model`,
# :func:`expand_paths`, :func:`predict_paths` and :func:`format_line`.

STUDY = "04_angle_regression"  # rotcore.studies.angle_regression.STUDY (not imported: that module is heavy)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


class AngleToolError(ValueError):
    """A checkpoint or input path the tool cannot use; the message says what to do instead."""


class MissingPathError(AngleToolError, FileNotFoundError):
    """A checkpoint or input path that does not exist (or a folder without image files)."""


@dataclasses.dataclass
class AngleModel:
    """A study-04 model in eval mode on the CPU, with what its preprocessing needs (from the checkpoint)."""

    model: torch.nn.Module
    input_size: int
    store_size: int
    border: str
    run: str
    checkpoint: Path
    card: dict[str, Any] | None
    done: bool = True
    epoch: int | None = None


def load_model(checkpoint: str | Path) -> AngleModel:
    """Load a study-04 checkpoint written by :func:`rotcore.train.fit` on the CPU, in eval mode, with its
    best-validation weights (``best_state``) when present, else the last epoch's (``model``).

    Raises :class:`MissingPathError` for a missing file, :class:`AngleToolError` for a file that is not a
    ``fit`` checkpoint or is one of another study. The file is unpickled (``weights_only=False``, as ``fit``
    reads its own checkpoints): load only checkpoints you trust.
    """
    from rotcore.models.angle_resnet import AngleResNet, AngleResNetConfig
    from rotcore.train import CHECKPOINT_FORMAT

    path = Path(checkpoint)
    where = shown_path(path)
    hint = (f"pass the checkpoint.pt of a study-04 run (runs/{STUDY}/<run>-<hash>/checkpoint.pt; "
            f"`rotbook run --only 04` trains one)")
    if not path.exists():
        raise MissingPathError(f"no checkpoint at {where}: {hint}")
    if not path.is_file():
        raise AngleToolError(f"{where} is not a file: {hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # UnpicklingError, RuntimeError (not a zip), EOFError (truncated), ...
        raise AngleToolError(f"{where} is not a readable torch checkpoint ({type(err).__name__}: {err}); "
                             f"{hint}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or not isinstance(
            ckpt.get("config"), dict) or "model" not in ckpt:
        raise AngleToolError(f"{where} is not a checkpoint written by rotcore.train.fit; {hint}")
    run = ckpt["config"].get("run")
    study = run.get("study") if isinstance(run, dict) else None
    if study != STUDY:
        raise AngleToolError(f"{where} is a checkpoint of {'study ' + repr(study) if study else 'no study'}, "
                             f"not of the angle-regression study {STUDY!r}; {hint}")
    try:
        cfg = AngleResNetConfig(**{**run["model"], "pretrained": False})  # the weights come from the file
        input_size, store_size = int(run["input_size"]), int(run["data"]["store_size"])
        border = str(run["spec"]["border"])
        model = AngleResNet(cfg)
        state = ckpt["best_state"] if ckpt.get("best_state") is not None else ckpt["model"]
        model.train()  # fit saves state dicts in train mode
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise AngleToolError(f"{where}: the study-04 checkpoint does not fit this version of rotcore "
                             f"({type(err).__name__}: {err}); retrain it with `rotbook run --only 04`") from None
    model.eval()
    return AngleModel(model=model, input_size=input_size, store_size=store_size, border=border,
                      run=str(run.get("run", "?")), checkpoint=path, card=read_card(path),
                      done=bool(ckpt.get("done", True)), epoch=ckpt.get("epoch"))


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def expand_paths(paths: Iterable[str | Path], *, notes: list[str] | None = None) -> list[Path]:
    """Files as given, and for each folder every non-hidden file directly inside it, sorted by name (folders
    are **not** searched recursively). Files are not checked here: one that is not a readable image becomes a
    per-file error of :func:`predict_paths`. Duplicates (the same resolved file twice) are dropped.

    Raises :class:`MissingPathError` for a path that does not exist or a folder with no file named like an
    image (``IMAGE_SUFFIXES``). Skipped subfolders are noted in ``notes`` when given.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise MissingPathError(f"{p}: no such file or folder")
        if p.is_dir():
            entries = sorted(e for e in p.iterdir() if not e.name.startswith("."))
            files = [e for e in entries if e.is_file()]
            if not any(_is_image_name(f) for f in files):
                raise MissingPathError(f"{p}: no image files in this folder (looked for "
                                       f"{', '.join(IMAGE_SUFFIXES)} directly inside; subfolders are not searched)")
            subdirs = sum(e.is_dir() for e in entries)
            if subdirs and notes is not None:
                notes.append(f"{p}: {subdirs} subfolder(s) not searched (folders are not searched recursively)")
        else:
            files = [p]
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def settings(am: AngleModel, *, min_confidence: float | None = None, tta: bool | None = None
             ) -> tuple[float, bool, str | None]:
    """``(min_confidence, tta, note)``: the flag when given, else the card's, else 0 (never abstain) and TTA
    on; ``note`` says when there was no card to read the threshold from (``None`` otherwise)."""
    card = am.card or {}
    note = None
    if min_confidence is None:
        if "min_confidence" in card:
            min_confidence = float(card["min_confidence"])
        else:
            min_confidence = 0.0
            note = (f"no {CARD} beside {shown_path(am.checkpoint)}: no abstention threshold, so every image gets "
                    "an angle (pass --min-confidence to set one)")
    if tta is None:
        tta = bool(card.get("tta", True))
    return float(min_confidence), bool(tta), note


def _load_square(path: Path, store_size: int) -> torch.Tensor:
    """The study's photo preprocessing (:func:`rotcore.data.load_photo_squares`): shorter side resized to
    ``store_size``, centre square, ``(3, S, S)`` uint8. The pixels as stored: EXIF orientation is not applied."""
    from rotcore.data import center_square, load_photo

    return center_square(load_photo(path, store_size), store_size)


def _wrap180(deg: float) -> float:
    """``deg`` in ``(-180, 180]``."""
    d = math.remainder(deg, 360.0)
    return 180.0 if d == -180.0 else d + 0.0


def predict_paths(model_or_checkpoint: AngleModel | str | Path, paths: Iterable[str | Path], *,
                  min_confidence: float | None = None, tta: bool | None = None, batch_size: int = 32,
                  progress: bool | None = None) -> list[dict[str, Any]]:
    """Predict the rotation of every image file of ``paths`` (files and folders, see :func:`expand_paths`).

    Images are preprocessed as study 04 renders its photos (centre square at the checkpoint's ``store_size``,
    floats in [0, 1], ``rotate_crop_batch`` by 0° to ``input_size`` with the run's border) and predicted in
    batches of ``batch_size`` with ``vec_predict`` (rot90 TTA when ``tta``). ``min_confidence``/``tta``:
    see :func:`settings`.

    Returns one dict per file, in order: ``path``; ``angle_deg``, the counter-clockwise rotation the photo
    shows, in [0, 360), and ``straighten_deg``, the counter-clockwise turn that straightens it (-θ, in
    (-180, 180]), both ``None`` when it abstained or failed (no angle is claimed); ``confidence`` (the length
    of the predicted vector); ``abstained`` (``confidence < min_confidence``); ``error`` (``None``, or why the
    file could not be read as an image); ``min_confidence`` and ``tta`` as used.
    """
    from tqdm.auto import tqdm

    from rotcore.rotate import rotate_crop_batch, vec_to_angle
    from rotcore.studies.angle_regression import vec_predict

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    am = model_or_checkpoint if isinstance(model_or_checkpoint, AngleModel) else load_model(model_or_checkpoint)
    threshold, tta, _ = settings(am, min_confidence=min_confidence, tta=tta)
    if not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"min_confidence must be a finite number >= 0, got {threshold}")
    files = expand_paths(paths)
    results: list[dict[str, Any]] = [
        {"path": str(f), "angle_deg": None, "straighten_deg": None, "confidence": None,
         "abstained": None, "error": None, "min_confidence": threshold, "tta": tta} for f in files]
    if progress is None:
        progress = os.environ.get("ROTBOOK_PROGRESS", "1") != "0" and len(files) > batch_size
    with tqdm(total=len(files), desc="predict-angle", unit="img", disable=None if progress else True,
              file=sys.stderr) as bar:
        for start in range(0, len(files), batch_size):
            ok, squares = [], []
            for i in range(start, min(start + batch_size, len(files))):
                try:
                    squares.append(_load_square(files[i], am.store_size))
                    ok.append(i)
                except Exception as err:  # per file: unreadable, not an image, truncated, too large, ...
                    results[i]["error"] = _describe(err)
            if ok:
                x = torch.stack(squares).float().div_(255)
                x = rotate_crop_batch(x, 0.0, out_size=am.input_size, border=am.border).clamp_(0, 1)
                vec = vec_predict(am.model, x, batch_size=batch_size, tta=tta, device="cpu").cpu()
                angles, conf = vec_to_angle(vec).tolist(), vec.norm(dim=-1).tolist()
                for i, a, c in zip(ok, angles, conf):
                    abstained = c < threshold
                    results[i].update(confidence=c, abstained=abstained,
                                      angle_deg=None if abstained else a,
                                      straighten_deg=None if abstained else _wrap180(-a))
            bar.update(min(batch_size, len(files) - start))
    return results


def _describe(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if type(err).__name__ == "UnidentifiedImageError" or "cannot identify image file" in text:
        return "not a readable image (cannot identify the image format)"
    return f"cannot read it as an image ({type(err).__name__}: {text})"


def _turn(deg: float) -> str:
    """A signed counter-clockwise angle in words: ``30.0° counter-clockwise`` / ``12.5° clockwise``."""
    deg = _wrap180(deg)
    if abs(deg) < 0.05:
        return "0.0°"
    return f"{abs(deg):.1f}° {'counter-clockwise' if deg > 0 else 'clockwise'}"


def format_line(r: dict[str, Any]) -> str:
    """One line of ``rotbook predict-angle`` output for a result of :func:`predict_paths`."""
    if r["error"] is not None:
        return f"{r['path']}\terror: {r['error']}"
    if r["abstained"]:
        return (f"{r['path']}\tabstained: confidence {r['confidence']:.3f} < {r['min_confidence']:.3f} "
                "(no angle claimed)")
    return (f"{r['path']}\trotated {_turn(r['angle_deg'])}\tto straighten: rotate {_turn(r['straighten_deg'])}"
            f"\tconfidence {r['confidence']:.3f}")
