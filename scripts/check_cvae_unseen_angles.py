"""Where does study 01's learned-rotation cVAE draw a digit asked for at an angle it never trained on? A check.

For each β (and seed), trains (or loads) the model with the profile's settings, draws the page's prior grid
(``study.generation_grid``: the same draws at every evaluation angle) and reads every sample with the page's
judges. For the unseen angles it prints, per angle: the digit judge's accuracy, the angle error to the intended
angle and to the nearest trained angle (``study.angle_error_deg``: axial for 0, 1 and 8), and the median signed
reading minus the intended angle (digits 0, 1 and 8 left out: their reading is axial). A model that follows its
angle has a small error to the intended angle; one that draws the digit near the trained range has a small error
to the nearest trained angle and a median signed difference pointing back towards it.

    ROTBOOK_ROOT=. python scripts/check_cvae_unseen_angles.py --profile cpu --betas 5 3

Last run (2026-12-06, cpu, seeds 0-2; an AMD EPYC Zen 4 with AVX512-BF16, not the Xeon that ran the page, so these
models are not the page's). "Inside": samples of digits 2-7 and 9 at unseen angles that the angle judge reads as
drawn inside the trained range (42 % of the circle: the chance level of a reading at random). Judges trained here:
98.3 % on real rotated test digits (page 98.8 %), angle MAE 10.0° (page 10.1°).

    β  seed | seen: digit acc, angle err | unseen: digit acc, err to intended | gap   | inside
    5  0    | 82.2 %, 19.9°              | 71.7 %, 76.5°                      | 56.7° | 67.1 %
    5  1    | 91.7 %, 14.8°              | 71.9 %, 68.1°                      | 53.3° | 65.8 %
    5  2    | 92.0 %, 15.6°              | 72.0 %, 59.3°                      | 43.7° | 58.7 %
    3  0    | 79.5 %, 18.4°              | 58.2 %, 37.7°                      | 19.4° | 31.3 %
    3  1    | 85.4 %, 15.6°              | 65.1 %, 57.0°                      | 41.4° | 48.0 %
    3  2    | 89.1 %, 15.4°              | 72.8 %, 56.4°                      | 41.0° | 48.5 %

Every model draws the hole's 45° about as well as a trained angle (error 17-20°). Beyond the trained range's ends
(90° and 270°), at β 5 59-67 % of the samples are drawn at a trained angle (chance 42 %), and the angle gap is
44-57°; at β 3, 31-49 % and 19-41°, with fewer digits surviving (58-73 % against 72 %). So a larger β makes the
learned rotation fall back to trained angles more often, and its gap grows (mean over the three seeds 33.9° at β 3,
51.2° at β 5). The seed moves the gap by up to 22° at one β, so the page's one-seed contrast (26° at β 3, 64.5° at
β 5) is partly the seed's. The samples at trained angles of the same β 5
recipe read 82.2 to 92.0 % over three seeds here (the page's one seed: 91.7 %), so the page's "met" floor for this
model depended on the training run. The page now trains it with seeds 0-2 and pools them (cvae.py's cpu
profile); on the 2-core Xeon with AMX those seeds read 91.7 / 91.2 / 94.2 % (gap 64.5 / 56.2 / 49.2°), so the
same seed reads differently on the two machines (seed 0: 82.2 % here).

Cost on 2 CPU cores (``cpu``): the judges ~13 min when not cached, each model ~3 min, the readings seconds.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from rotcore import report
from rotcore.rotate import distance_to_intervals_deg, in_intervals, signed_diff_deg
from rotcore.studies import cvae as study


def nearest_trained_deg(angles_deg: torch.Tensor, intervals_deg) -> torch.Tensor:
    """The nearest end of a training interval to each angle (for an unseen angle: its nearest trained angle)."""
    ends = torch.tensor([e for iv in intervals_deg for e in iv], dtype=torch.float64)
    a = angles_deg.to(torch.float64)
    idx = signed_diff_deg(a[:, None], ends[None]).abs().argmin(1)
    return torch.remainder(ends[idx], 360.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(study.PROFILES))
    parser.add_argument("--model", default="latent", choices=list(study.MODELS))
    parser.add_argument("--betas", nargs="+", type=float, default=[5.0, 3.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args(argv)

    cfg0 = report.resolve_config(study, args.profile)
    data = study.load_data(cfg0)
    digit_judge, angle_judge = study.load_judges(cfg0)
    chance = in_intervals(torch.arange(0.0, 360.0, 0.5, dtype=torch.float64), cfg0.train_angles_deg).double().mean()
    for beta in args.betas:
        for seed in args.seeds:
            cfg = dataclasses.replace(cfg0, beta=beta, models=(args.model,), seeds=(seed,))
            t = study.train(args.model, cfg, data, seed=seed)
            digits, angles, z = study.generation_grid(cfg, "cpu", seed=seed)
            x = study.generate(t.model, digits, angles, z, batch_size=cfg.eval_batch_size)
            read = study.read_digits(digit_judge, x, batch_size=cfg.eval_batch_size)[0].cpu() == digits.cpu()
            pred = angle_judge.predict_deg(x, batch_size=cfg.eval_batch_size).cpu()
            a, d = angles.cpu(), digits.cpu()
            unseen = distance_to_intervals_deg(a, cfg.train_angles_deg) > 0
            near = nearest_trained_deg(a, cfg.train_angles_deg)
            err = study.angle_error_deg(pred, a, d)
            err_near = study.angle_error_deg(pred, near.to(pred.dtype), d)
            circular = ~torch.isin(d, torch.tensor(study.AXIAL_DIGITS))
            inside = in_intervals(pred.double(), cfg.train_angles_deg)  # read as drawn at a trained angle
            print(f"\n{study.MODELS[args.model]}, β {beta:g}, seed {seed}: seen: digit acc "
                  f"{100 * read[~unseen].float().mean():.1f} %, angle err {err[~unseen].mean():.1f}° | unseen: digit "
                  f"acc {100 * read[unseen].float().mean():.1f} %, err to intended {err[unseen].mean():.1f}°, to "
                  f"nearest trained {err_near[unseen].mean():.1f}° (gap {err[unseen].mean() - err[~unseen].mean():.1f}°); "
                  f"read inside the trained range {100 * inside[unseen & circular].float().mean():.1f} % (chance "
                  f"{100 * chance:.1f} %)")
            print(" angle | dist | digit acc % | err to intended | err to nearest trained (angle) | median signed "
                  "| read inside trained %")
            for ang in sorted(set(a[unseen].tolist())):
                m = a == ang
                sd = signed_diff_deg(pred[m & circular].double(), a[m & circular].double())
                print(f" {ang:5.0f} | {distance_to_intervals_deg(torch.tensor([ang]), cfg.train_angles_deg).item():4.0f}"
                      f" | {100 * read[m].float().mean():11.1f} | {err[m].mean():15.1f} | {err_near[m].mean():22.1f} "
                      f"({near[m][0]:.0f}) | {sd.median():13.1f} | {100 * inside[m & circular].float().mean():20.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
