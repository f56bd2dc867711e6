"""Training throughput of rotcore's fit loop: images/s, eager vs torch.compile, fp32 vs bf16.

Measures what the studies actually run: MNIST held on the device, a fresh random rotation per image and
per step through ``rotcore.rotate.rotate_batch`` (one ``grid_sample`` call per batch), a model from a study
(``--models``: study 05's classifiers, study 01's cVAEs with their ELBO loss and training-angle sampling),
and ``rotcore.train.fit`` itself (3 epochs; the first, which includes compilation, is dropped). Also times
``rotate_batch`` alone. Results go to stdout as a Markdown table and to ``--out`` as JSON.

    python benchmarks/train_step.py                      # on the GPU: the numbers for the issues
    python benchmarks/train_step.py --quick              # on a CPU: a small run that checks the script
    python benchmarks/train_step.py --models cvae_scalar cvae_rotation --batches 1024 16384
                                                         # study 01's target: >= 250k img/s, bf16 + compile

Not part of pytest: speed depends on the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rotcore.data import load_mnist
from rotcore.models.classifier import ClassifierConfig, build_classifier
from rotcore.results import describe_device
from rotcore.rotate import random_angles, rotate_batch
from rotcore.train import FitConfig, TensorLoader, default_device, fit


def loss_fn(model, batch):
    x, y = batch
    x = rotate_batch(x, random_angles(len(x), device=x.device))
    return F.cross_entropy(model(x), y)


@dataclasses.dataclass(frozen=True)
class Bench:
    """A model to time: its label, a config (recorded in the JSON), a builder and its training loss."""

    label: str
    config: object
    build: Callable[[], torch.nn.Module]
    loss_fn: Callable


def benches(quick: bool) -> dict[str, Bench]:
    from rotcore.models.cvae import CVAE
    from rotcore.studies import cvae as study01

    width = 0.1 if quick else 1.0
    out = {}
    for key, label, group, w in (("cnn", "CNN (study 05 plan)", "C1", 0.8), ("c8", "C8 G-CNN", "C8", 1.0)):
        mcfg = ClassifierConfig(group=group, width=w * width)
        out[key] = Bench(label, mcfg, lambda mcfg=mcfg: build_classifier(mcfg), loss_fn)
    # study 01: the full profile's cVAEs, trained exactly as the study trains them
    from rotcore import report

    profile = "smoke" if quick else ("gpu" if "gpu" in study01.PROFILES else "full")  # "full" was renamed "gpu"
    s01 = report.resolve_config(study01, profile)
    cvae_loss = study01.cvae_loss(s01.train_angles_deg, beta=s01.beta)
    for key in study01.MODELS:
        mcfg = s01.model_config(key)
        out[f"cvae_{key}"] = Bench(f"cVAE {study01.MODELS[key]} (study 01)", mcfg, lambda mcfg=mcfg: CVAE(mcfg),
                                   cvae_loss)
    return out


def bench_fit(bench: Bench, x, y, *, batch_size: int, precision: str, compile: bool, device) -> float:
    torch.manual_seed(0)
    model = bench.build()
    cfg = FitConfig(epochs=3, batch_size=batch_size, lr=1e-3, precision=precision, compile=compile)
    res = fit(model, bench.loss_fn, TensorLoader(x, y, batch_size=batch_size, drop_last=True), config=cfg,
              device=device, progress=False)
    return max(h["images_per_s"] for h in res.history[1:])


def bench_rotate(x, *, repeats: int, device) -> float:
    a = random_angles(len(x), device=device)
    rotate_batch(x, a)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        rotate_batch(x, a)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return repeats * len(x) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (CPU check)")
    p.add_argument("--out", default="benchmarks/train_step.json")
    p.add_argument("--models", nargs="+", default=["cnn", "c8", "cvae_scalar"],
                   help="which models to time: cnn, c8, cvae_scalar, cvae_film, cvae_rotation")
    p.add_argument("--batches", nargs="+", type=int, default=None, help="batch sizes (default 256 1024 4096)")
    args = p.parse_args()
    device = default_device()
    n = 4_096 if args.quick else 60_000
    train = load_mnist("train").head(n).to(device)
    available = benches(args.quick)
    unknown = [m for m in args.models if m not in available]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(available)}")
    models = {available[k].label: available[k] for k in args.models}
    batches = args.batches or ((256,) if args.quick else (256, 1024, 4096))
    precisions = ("fp32",) if device.type != "cuda" else ("fp32", "bf16")
    compiles = (False,) if args.quick else (False, True)
    rows = []
    rows.append({"what": "rotate_batch (bilinear, per-image angles)", "batch_size": len(train), "precision": "fp32",
                 "compile": False, "images_per_s": bench_rotate(train.x, repeats=3 if args.quick else 20, device=device)})
    for name, bench in models.items():
        for bs in batches:
            for prec in precisions:
                for comp in compiles:
                    try:
                        ips = bench_fit(bench, train.x, train.y, batch_size=bs, precision=prec, compile=comp, device=device)
                    except Exception as err:  # an OOM or a compile failure is a result too
                        ips = float("nan")
                        print(f"{name} bs={bs} {prec} compile={comp}: {type(err).__name__}: {err}")
                    rows.append({"what": f"fit: {name}", "batch_size": bs, "precision": prec, "compile": comp,
                                 "images_per_s": ips})
    record = {"device": describe_device(device), "torch": torch.__version__, "quick": args.quick,
              "rows": rows, "models": {k: dataclasses.asdict(v.config) for k, v in models.items()}}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print(f"device: {record['device']}  torch {torch.__version__}\n")
    print("| what | batch | precision | compile | images/s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['batch_size']} | {r['precision']} | {r['compile']} | {r['images_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
