"""Does ``fit``'s bf16 autocast keep results? The study-05 plain CNN at smoke size, fp32 vs bf16, 2 seeds.

Trains the plain CNN of study 05 (``ClassifierConfig(group="C1", width=0.25)``) through
``rotcore.train.fit`` on a few thousand MNIST digits with a fresh random rotation per image and step (the
study's augmentation), then scores it on held-out test digits at fixed, seeded random angles. Each seed
runs once with ``precision="fp32"`` and once with ``precision="bf16"`` (the same seed gives both the same
initial weights and the same batches), both with ``memory_format="auto"`` (channels_last). Compare the
fp32-bf16 difference with the seed-to-seed spread, which is the noise of this protocol.

    ROTBOOK_DATA=../shared/data python benchmarks/precision_check.py     # ~2-3 min on 2 cores

Not part of pytest.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from rotcore.data import load_mnist
from rotcore.metrics import accuracy_pct
from rotcore.models.classifier import ClassifierConfig, build_classifier
from rotcore.rotate import random_angles, rotate_batch
from rotcore.train import FitConfig, TensorLoader, fit, predict


def loss_fn(model, batch):
    x, y = batch
    return F.cross_entropy(model(rotate_batch(x, random_angles(len(x), device=x.device))), y)


def run(seed: int, precision: str, train, test_x, test_y, *, epochs: int) -> dict:
    torch.manual_seed(seed)
    model = build_classifier(ClassifierConfig(group="C1", width=0.25))
    cfg = FitConfig(epochs=epochs, batch_size=64, lr=3e-3, optimizer="adam", lr_schedule="cosine",
                    precision=precision, seed=seed)
    loader = TensorLoader(train.x, train.y, batch_size=64, shuffle=True, drop_last=True, seed=seed)
    t0 = time.perf_counter()
    res = fit(model, loss_fn, loader, config=cfg, device="cpu", progress=False)
    acc = accuracy_pct(predict(model, test_x), test_y)
    return {"seed": seed, "precision": precision, "test_acc_pct": acc, "train_loss": res.history[-1]["train_loss"],
            "time_s": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=4_000)
    p.add_argument("--test", type=int, default=2_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train = load_mnist("train").head(args.train)
    test = load_mnist("test").head(args.test)
    angles = random_angles(len(test), generator=torch.Generator().manual_seed(123))
    test_x = rotate_batch(test.x, angles)
    rows = []
    for seed in args.seeds:
        for precision in ("fp32", "bf16"):
            r = run(seed, precision, train, test_x, test.y, epochs=args.epochs)
            rows.append(r)
            print(f"seed {seed} {precision}: rotated-test accuracy {r['test_acc_pct']:.2f} %, final train loss "
                  f"{r['train_loss']:.4f} ({r['time_s']:.0f} s)", flush=True)
    acc = {pr: [r["test_acc_pct"] for r in rows if r["precision"] == pr] for pr in ("fp32", "bf16")}
    diffs = [b - a for a, b in zip(acc["fp32"], acc["bf16"])]
    spread = max(max(v) - min(v) for v in acc.values()) if len(args.seeds) > 1 else 0.0
    pbar = statistics.mean(acc["fp32"] + acc["bf16"]) / 100
    sampling = 100 * 1.96 * (2 * pbar * (1 - pbar) / args.test) ** 0.5  # 95 % half-width of a difference of two
    noise = max(spread, sampling)                                         # accuracies on args.test digits
    mean_diff = statistics.mean(diffs)
    print(f"\nplain CNN (study 05, width 0.25), {args.train:,} digits x {args.epochs} epochs, "
          f"test {args.test:,} rotated digits, seeds {args.seeds}")
    print("| precision | accuracy per seed (%) | mean (%) |\n|---|---|---|")
    for pr, v in acc.items():
        print(f"| {pr} | {', '.join(f'{a:.2f}' for a in v)} | {statistics.mean(v):.2f} |")
    print(f"bf16 - fp32 per seed: {', '.join(f'{d:+.2f}' for d in diffs)} points (mean {mean_diff:+.2f}); noise: "
          f"seed-to-seed spread {spread:.2f} points, test-set sampling ±{sampling:.2f} points (95 %, a difference of "
          f"two accuracies on {args.test:,} digits)")
    verdict = "within" if abs(mean_diff) <= noise else "OUTSIDE"
    print(f"=> bf16 is {verdict} the noise of this protocol (|mean difference| {abs(mean_diff):.2f} <= "
          f"max(spread, sampling) = {noise:.2f} points)")


if __name__ == "__main__":
    main()
