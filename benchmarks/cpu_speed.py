"""CPU training speed of each study's main model: eager fp32 vs the setting ``rotcore.train.fit`` chooses.

For each model, at the size its ``cpu`` profile trains it (issue 10 §2), one training step is exactly what
``fit`` runs (the study's own data path included: a fresh ``rotate_batch`` / ``rotate_crop_batch`` per step):

* ``fp32``: eager, float32, contiguous (NCHW) parameters, as the code ran before issue 10;
* ``chosen``: what ``fit`` picks with its defaults ``precision="auto"``, ``memory_format="auto"``:
  ``rotcore.train.autocast(device, "auto")`` (bf16 autocast on a CPU with native bf16) and, for models with
  ``nn.Conv2d``, channels_last parameters (``rotcore.train.use_channels_last``).

The machine may be shared, so the two settings are timed in **interleaved trials** (fp32, chosen, fp32,
chosen, ...; ``--rounds`` each) and the best trial of each is reported: load from other processes only ever
slows a trial down, so the best of several is the least disturbed estimate, and interleaving exposes both
settings to the same load. The same holds for the thread comparison (``torch.set_num_threads`` 1 vs 2 on the
plain CNN, chosen setting) and for the data-pipeline comparison: the seed's per-sample PIL
``RandomRotation(360)`` + ``ToTensor`` in a ``DataLoader`` with 2 workers vs ``rotate_batch`` on a whole
batch tensor (random angle per image), both over real MNIST (``rotcore.data.load_mnist``).

    ROTBOOK_DATA=../shared/data python benchmarks/cpu_speed.py            # ~2-3 min on 2 cores
    python benchmarks/cpu_speed.py --models cnn c8 --rounds 2 --no-threads --no-pipeline

Prints a Markdown table (copy it into benchmarks/README.md with the date) and writes JSON to ``--out``.
Not part of pytest: speed depends on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from rotcore.data import load_mnist
from rotcore.results import describe_device
from rotcore.rotate import random_angles, random_angles_in, rotate_batch, rotate_crop_batch
from rotcore.speed import Case, Runner, classifier_case, interleaved
from rotcore.train import cpu_has_native_bf16, resolve_precision, use_channels_last


def _mnist_batch(n: int):
    d = load_mnist("train").head(n)
    return d.x, d.y


def cases() -> dict[str, Case]:
    from rotcore.models.angle_resnet import AngleResNetConfig, build_angle_model
    from rotcore.models.cvae import CVAE, CVAEConfig, elbo_loss
    from rotcore.models.eqvae import SDVAEConfig, build_autoencoder_kl

    out = {}

    x, y = _mnist_batch(128)
    for key in ("cnn", "c8"):  # study 05: a fresh random rotation per image and step, cross-entropy
        out[key] = classifier_case(key, x, y)

    def resnet_loss(model):
        squares = torch.rand(64, 3, 144, 144, generator=torch.Generator().manual_seed(0))

        def loss():  # study 04: a rotation-safe crop of each photo square at a fresh angle, vector head
            a = random_angles(len(squares))
            return model.loss(model(rotate_crop_batch(squares, a, out_size=96)), a)
        return loss

    out["resnet18"] = Case("resnet18", "ResNet18 angle regressor (study 04)", "96 px, batch 64", 64,
                           lambda: build_angle_model(AngleResNetConfig()), resnet_loss)

    ccfg = CVAEConfig(conditioning="rotation", latent_dim=16, enc_channels=(32, 64), dec_channels=(64, 32),
                      enc_hidden=256, dec_hidden=256, film_hidden=64)
    train_angles = ((0.0, 30.0), (60.0, 90.0), (270.0, 360.0))

    def cvae_loss(model):
        x, y = _mnist_batch(256)

        def loss():  # study 01's loss: rotate by a training angle, encode, decode conditioned on it, ELBO
            a = random_angles_in(train_angles, len(x))
            xr = rotate_batch(x, a)
            return elbo_loss(model(xr, y, a), xr)[0]
        return loss

    out["cvae"] = Case("cvae", "cVAE, explicit rotation (study 01)", "28 px, batch 256 (gpu-profile widths)", 256,
                       lambda: CVAE(ccfg), cvae_loss)

    vcfg = SDVAEConfig(block_out_channels=(64, 128, 256, 256), layers_per_block=2, norm_num_groups=32, sample_size=64)

    def vae_loss(model):
        x01 = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))

        def loss():  # study 02's base: reconstruction + KL/(3HW) of a diffusers AutoencoderKL
            x = x01 * 2 - 1
            post = model.encode(x).latent_dist
            rec = F.mse_loss(model.decode(post.sample()).sample.float(), x)
            return rec + 1e-6 * post.kl().float().mean() / x[0].numel()
        return loss

    out["autoencoder_kl"] = Case("autoencoder_kl", "AutoencoderKL (study 02 base)",
                                 "64 px, batch 4, SD block plan 64-128-256-256", 4,
                                 lambda: build_autoencoder_kl(vcfg), vae_loss)
    return out


def bench_models(keys, rounds: int, min_s: float, device) -> list[dict]:
    all_cases = cases()
    rows = []
    for key in keys:
        case = all_cases[key]
        fp32, chosen = Runner(case, "fp32", device), Runner(case, "chosen", device)
        trials = interleaved({"fp32": lambda r=fp32: r.trial(min_s), "chosen": lambda r=chosen: r.trial(min_s)}, rounds)
        best = {k: max(v) for k, v in trials.items()}
        row = {"model": case.label, "size": case.size, "fp32_img_s": best["fp32"], "chosen_img_s": best["chosen"],
               "ratio": best["chosen"] / best["fp32"],
               "chosen": f"{resolve_precision(device, 'auto')}"
                         + (" + channels_last" if use_channels_last(chosen.model, "auto") else ""),
               "trials": trials}
        rows.append(row)
        print(f"  {case.label}: fp32 {best['fp32']:,.1f} img/s, chosen {best['chosen']:,.1f} img/s "
              f"({row['ratio']:.2f}x; trials {[round(t, 1) for t in trials['fp32']]} / "
              f"{[round(t, 1) for t in trials['chosen']]})", flush=True)
        del fp32, chosen
    return rows


def bench_threads(rounds: int, min_s: float, device) -> dict:
    case = cases()["cnn"]
    runner = Runner(case, "chosen", device)
    before = torch.get_num_threads()

    def with_threads(n):
        def fn():
            torch.set_num_threads(n)
            try:
                return runner.trial(min_s)
            finally:
                torch.set_num_threads(before)
        return fn

    trials = interleaved({"1": with_threads(1), "2": with_threads(2)}, rounds)
    best = {k: max(v) for k, v in trials.items()}
    print(f"  threads: 1 -> {best['1']:,.0f} img/s, 2 -> {best['2']:,.0f} img/s (default {before})", flush=True)
    return {"model": case.label, "setting": "chosen", "default_threads": before,
            "img_s": {k: best[k] for k in best}, "trials": trials}


class _PILRotated(torch.utils.data.Dataset):
    """The seed's pipeline: a PIL image per sample, ``RandomRotation(360)`` then ``ToTensor``."""

    def __init__(self, x_uint8: torch.Tensor, y: torch.Tensor):
        import torchvision.transforms as T

        self.x, self.y = x_uint8.numpy(), y
        self.tf = T.Compose([T.RandomRotation(360), T.ToTensor()])

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image

        return self.tf(Image.fromarray(self.x[i])), self.y[i]


def bench_pipeline(n: int, batch_size: int, rounds: int) -> dict:
    raw = load_mnist("train")
    x_u8 = (raw.x[:n, 0] * 255).round().to(torch.uint8)  # MNIST as the seed reads it: 28×28 uint8
    y = raw.y[:n]
    loader = torch.utils.data.DataLoader(_PILRotated(x_u8, y), batch_size=batch_size, shuffle=True, num_workers=2,
                                         persistent_workers=False)

    def pil():
        t0 = time.perf_counter()
        seen = sum(len(xb) for xb, _ in loader)  # includes starting the 2 workers, as each seed epoch does
        return seen / (time.perf_counter() - t0)

    x_u8_batch = x_u8[:, None]

    def batched():
        t0 = time.perf_counter()
        seen = 0
        for i in range(0, n, batch_size):
            xb = x_u8_batch[i : i + batch_size].float().div_(255)
            xb = rotate_batch(xb, random_angles(len(xb)))
            seen += len(xb)
        return seen / (time.perf_counter() - t0)

    trials = interleaved({"pil_dataloader": pil, "rotate_batch": batched}, rounds)
    best = {k: max(v) for k, v in trials.items()}
    ratio = best["rotate_batch"] / best["pil_dataloader"]
    print(f"  pipeline: PIL DataLoader {best['pil_dataloader']:,.0f} img/s, rotate_batch {best['rotate_batch']:,.0f} "
          f"img/s ({ratio:.1f}x)", flush=True)
    return {"images": n, "batch_size": batch_size, "img_s": best, "ratio": ratio, "trials": trials}


def _n(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["cnn", "c8", "resnet18", "cvae", "autoencoder_kl"])
    p.add_argument("--rounds", type=int, default=3, help="interleaved trials per setting (best is reported)")
    p.add_argument("--min-s", type=float, default=1.5, help="minimum seconds per trial")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads for the model and pipeline timings (default: torch's, = cores)")
    p.add_argument("--no-threads", action="store_true", help="skip the 1-vs-2-threads comparison")
    p.add_argument("--no-pipeline", action="store_true")
    p.add_argument("--out", default="benchmarks/cpu_speed.json")
    args = p.parse_args()
    device = torch.device("cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    print(f"device: {describe_device(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"native bf16: {cpu_has_native_bf16()}", flush=True)
    record = {"device": describe_device(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "native_bf16": cpu_has_native_bf16(), "rounds": args.rounds, "min_s": args.min_s,
              "method": "interleaved trials, best of each setting reported (robust to load from other processes)"}
    record["models"] = bench_models(args.models, args.rounds, args.min_s, device)
    if not args.no_threads:
        record["threads_cnn"] = bench_threads(args.rounds, args.min_s, device)
    if not args.no_pipeline:
        record["pipeline"] = bench_pipeline(12_800, 128, args.rounds)
    record["total_s"] = time.perf_counter() - t_start
    record["load_average_1min"] = {"start": load_start, "end": os.getloadavg()[0], "cores": os.cpu_count()}
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)

    load = record["load_average_1min"]
    print(f"\nTraining step, img/s, {torch.get_num_threads()} thread(s): best of {args.rounds} interleaved trials per "
          f"setting; 1-min load average {load['start']:.1f} -> {load['end']:.1f} on {load['cores']} cores"
          + (" (a SHARED machine: absolute img/s are low, compare ratios)" if max(load['start'], load['end'])
             > 1.5 * (load['cores'] or 1) else "") + "\n")
    print("| model | size | fp32 eager | chosen by `fit` | setting | ratio |\n|---|---|---|---|---|---|")
    for r in record["models"]:
        print(f"| {r['model']} | {r['size']} | {_n(r['fp32_img_s'])} | {_n(r['chosen_img_s'])} | {r['chosen']} "
              f"| **{r['ratio']:.2f}×** |")
    if "threads_cnn" in record:
        t = record["threads_cnn"]
        print(f"\nThreads ({t['model']}, chosen setting): 1 thread {t['img_s']['1']:,.0f} img/s, "
              f"2 threads {t['img_s']['2']:,.0f} img/s ({t['img_s']['2'] / t['img_s']['1']:.2f}×)")
    if "pipeline" in record:
        q = record["pipeline"]
        print(f"\nData pipeline ({q['images']:,} MNIST digits, batch {q['batch_size']}): seed-style PIL "
              f"RandomRotation(360) + ToTensor in a DataLoader with 2 workers {q['img_s']['pil_dataloader']:,.0f} img/s; "
              f"rotate_batch on the batch tensor {q['img_s']['rotate_batch']:,.0f} img/s: **{q['ratio']:.1f}×**")
    print(f"\ntotal {record['total_s']:.0f} s; JSON: {args.out}")


if __name__ == "__main__":
    main()
