"""``rotbook predict-angle`` (rotcore.predict_angle): a tiny random study-04 checkpoint, tiny PNGs, CPU, seconds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rotcore import angle_tool, predict_angle, runner
from rotcore.config import to_dict
from rotcore.models.angle_resnet import AngleResNet, AngleResNetConfig
from rotcore.rotate import signed_diff_deg
from rotcore.train import CHECKPOINT_FORMAT

ROOT = Path(__file__).resolve().parents[1]
STORE, INPUT = 24, 16  # the smallest sizes a ResNet18 still runs on in a blink


def _run_config(study: str = "04_angle_regression") -> dict:
    return {"study": study, "run": "ours_vec",
            "spec": {"label": "ours, vec head", "head": "vec", "border": "crop", "split": "photo", "recipe": "ours"},
            "model": to_dict(AngleResNetConfig()), "input_size": INPUT, "data": {"store_size": STORE, "seed": 0}}


def _save_checkpoint(path: Path, *, study: str = "04_angle_regression", seed: int = 0) -> Path:
    """A checkpoint in the layout ``rotcore.train.fit`` writes; ``best_state`` differs from ``model`` in the
    head (the rest shares storage, so the file holds one set of weights: smaller and faster to load)."""
    torch.manual_seed(seed)
    best = AngleResNet(AngleResNetConfig()).state_dict()
    last = {**best, "head.1.weight": torch.zeros_like(best["head.1.weight"])}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "config": {"fit": {"epochs": 1}, "run": _run_config(study)},
                "epoch": 1, "done": True, "model": last, "best_state": best}, path)
    return path


def _png(path: Path, seed: int, size: int = STORE) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared CPU: one thread is faster than several that wait for each other."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _save_checkpoint(tmp_path_factory.mktemp("run") / "ours_vec-0000" / "checkpoint.pt")


@pytest.fixture(scope="module")
def am(ckpt):
    return predict_angle.load_model(ckpt)


@pytest.fixture
def mixed(tmp_path) -> Path:
    """Two good PNGs, a truncated PNG and a text file."""
    d = tmp_path / "photos"
    d.mkdir()
    _png(d / "a.png", 1)
    _png(d / "b.png", 2)
    (d / "c_corrupt.png").write_bytes((d / "a.png").read_bytes()[:60])
    (d / "notes.txt").write_text("not an image\n")
    return d


@pytest.fixture
def card_cleanup(ckpt):
    """Removes the card a test writes beside the shared checkpoint."""
    yield
    ckpt.with_name(angle_tool.CARD).unlink(missing_ok=True)


def test_load_model_uses_best_state_in_eval_mode(ckpt, am):
    best = torch.load(ckpt, weights_only=False)["best_state"]
    assert not am.model.training
    assert (am.input_size, am.store_size, am.border, am.run) == (INPUT, STORE, "crop", "ours_vec")
    assert all(torch.equal(v, best[k]) for k, v in am.model.state_dict().items())
    assert am.model.head[1].weight.abs().sum() > 0  # not the last epoch's (zero) head


def test_cli_mixed_folder_predicts_good_files_and_reports_bad_ones(ckpt, mixed, capsys):
    assert runner.main(["predict-angle", str(ckpt), str(mixed)]) == 1
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert [Path(line.split("\t")[0]).name for line in lines] == ["a.png", "b.png", "c_corrupt.png", "notes.txt"]
    assert sum("rotated" in line and "to straighten" in line for line in lines) == 2
    assert sum("\terror: " in line for line in lines) == 2
    assert "Traceback" not in err and f"no {angle_tool.CARD}" in err  # no card: a note, never abstain

    assert runner.main(["predict-angle", str(ckpt), str(mixed), "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [r["error"] is None for r in rows] == [True, True, False, False]
    for r in rows[:2]:
        assert 0 <= r["angle_deg"] < 360 and r["confidence"] > 0 and r["abstained"] is False
        assert abs(signed_diff_deg(torch.tensor(r["straighten_deg"]), torch.tensor(-r["angle_deg"]))) < 1e-6


def test_cli_in_a_subprocess_has_no_traceback(ckpt, mixed):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ROTBOOK_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "rotcore.runner", "predict-angle", str(ckpt), str(mixed)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stdout.strip().splitlines()) == 4
    assert proc.stdout.count("\terror: ") == 2


@pytest.mark.parametrize("case", ["missing", "empty", "only_text"])
def test_cli_bad_path_exits_2_naming_it(ckpt, tmp_path, capsys, case):
    bad = tmp_path / case
    if case != "missing":
        bad.mkdir()
    if case == "only_text":
        (bad / "readme.txt").write_text("x")
    good = _png(tmp_path / "good.png", 0)
    assert runner.main(["predict-angle", str(ckpt), str(good), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert str(bad) in err and "Traceback" not in err and out == ""


def test_bad_checkpoints_are_clear_errors(tmp_path, capsys):
    other = _save_checkpoint(tmp_path / "other" / "checkpoint.pt", study="05_rotation_invariance")
    with pytest.raises(ValueError, match="05_rotation_invariance.*04_angle_regression"):
        predict_angle.load_model(other)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        predict_angle.load_model(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        predict_angle.load_model(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="not a checkpoint written by rotcore.train.fit"):
        predict_angle.load_model(plain)
    img = _png(tmp_path / "x.png", 0)
    for bad, words in [(other, "05_rotation_invariance"), (junk, "junk.pt"), (tmp_path / "nope.pt", "nope.pt")]:
        assert runner.main(["predict-angle", str(bad), str(img)]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err


def test_abstention_threshold_from_flag_then_card(ckpt, am, mixed, capsys, card_cleanup):
    files = [mixed / "a.png", mixed / "b.png"]
    rows = predict_angle.predict_paths(am, files, min_confidence=1e9)
    assert all(r["abstained"] and r["angle_deg"] is None and r["straighten_deg"] is None for r in rows)
    conf = [r["confidence"] for r in predict_angle.predict_paths(am, files, min_confidence=0)]
    assert conf[0] != conf[1]
    mid = sum(conf) / 2
    angle_tool.write_card(ckpt, val_confidence=torch.full((5,), mid), coverage_pct=80, tta=True)
    rows = predict_angle.predict_paths(am.checkpoint, files)  # reloaded, so it reads the card
    assert [r["abstained"] for r in rows] == [c < mid for c in conf] and rows[0]["min_confidence"] == mid
    assert runner.main(["predict-angle", str(ckpt), *map(str, files)]) == 0
    out, err = capsys.readouterr()
    assert out.count("abstained") == 1 and "no angle claimed" in out and angle_tool.CARD not in err
    assert runner.main(["predict-angle", str(ckpt), *map(str, files), "--min-confidence", "0"]) == 0
    assert "abstained" not in capsys.readouterr().out


def test_card_tta_setting_and_no_tta_flag(ckpt, am, mixed, capsys, card_cleanup):
    files = [str(mixed / "a.png")]
    plain = predict_angle.predict_paths(am, files, tta=False)[0]["angle_deg"]
    tta = predict_angle.predict_paths(am, files, tta=True)[0]["angle_deg"]
    assert abs(signed_diff_deg(torch.tensor(plain), torch.tensor(tta))) > 1e-3  # the setting matters
    angle_tool.write_card(ckpt, val_confidence=torch.zeros(3), tta=False)
    assert runner.main(["predict-angle", str(ckpt), *files, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["angle_deg"] == pytest.approx(plain, abs=1e-6)
    ckpt.with_name(angle_tool.CARD).unlink()
    assert runner.main(["predict-angle", str(ckpt), *files, "--json", "--no-tta"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["angle_deg"] == pytest.approx(plain, abs=1e-6)


def test_quarter_turn_of_the_file_shifts_the_angle_by_90_with_tta(am, tmp_path):
    src = _png(tmp_path / "src.png", 7)
    turned = tmp_path / "turned.png"
    with Image.open(src) as im:
        im.transpose(Image.Transpose.ROTATE_90).save(turned)  # 90° counter-clockwise
    for tta in (True, False):
        a, b = (r["angle_deg"] for r in predict_angle.predict_paths(am, [src, turned], tta=tta, min_confidence=0))
        off = abs(signed_diff_deg(torch.tensor(b, dtype=torch.float64), torch.tensor(a + 90.0, dtype=torch.float64)))
        assert (off < 1e-3) if tta else (off > 1e-3), (tta, a, b)  # a random model is not equivariant by itself


def test_matches_the_study_pipeline(am, tmp_path):
    """The tool renders a file as study 04 renders a photo (its load_photo_squares, render, vec_predict)."""
    from rotcore.data import PhotoRecord, load_photo_squares
    from rotcore.studies.angle_regression import EvalSet, render, vec_predict

    files = [_png(tmp_path / "big.png", 4, size=40), _png(tmp_path / "small.png", 5, size=STORE)]
    squares = load_photo_squares([PhotoRecord(f, "", "", "") for f in files], STORE)
    x = render(squares, EvalSet("x", torch.arange(2), torch.zeros(2)), size=INPUT, border="crop")
    vec = vec_predict(am.model, x, batch_size=8, tta=True)
    rows = predict_angle.predict_paths(am, files, tta=True, min_confidence=0, batch_size=1)
    assert [r["confidence"] for r in rows] == pytest.approx(vec.norm(dim=-1).tolist(), abs=1e-6)


def test_folders_are_sorted_not_recursive_and_deduplicated(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    for name in ("b.png", "a.png", ".hidden.png", "sub/c.png"):
        _png(d / name, 0)
    notes = []
    assert predict_angle.expand_paths([d, d / "a.png"], notes=notes) == [d / "a.png", d / "b.png"]
    assert "not searched recursively" in notes[0]


def test_write_card_threshold_keeps_the_stated_coverage(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"")
    conf = torch.randperm(100).double() / 100 + 0.001  # distinct values
    for coverage in (80.0, 50.0, 100.0, 25.0):
        angle_tool.write_card(ckpt, val_confidence=conf, coverage_pct=coverage)
        card = angle_tool.read_card(ckpt)
        assert card["coverage_pct"] == coverage
        assert (conf >= card["min_confidence"]).double().mean().item() == pytest.approx(coverage / 100)
    with pytest.raises(ValueError):
        angle_tool.write_card(ckpt, val_confidence=conf, coverage_pct=0)
    with pytest.raises(FileNotFoundError):
        angle_tool.write_card(tmp_path / "missing.pt", val_confidence=conf)
