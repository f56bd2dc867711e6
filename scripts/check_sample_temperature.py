"""Does truncating study 01's prior draws lift its samples to the 90 % floor? A check, not a choice made on test.

Loads (or trains) the profile's generators and judges exactly as the notebook does, then draws
``--draws`` codes per digit from N(0, T² I) for each temperature T, decodes them at every **trained** evaluation
angle and prints the share the digit judge reads as the intended digit, per model and seed (6s and 9s within
45° of a half turn left out, as on the page). The draws use another seed offset than the page's
(``draw_seed_offset=1000``), so the page's own samples are not the ones looked at.

    ROTBOOK_ROOT=. python scripts/check_sample_temperature.py --profile cpu

Cost on 2 CPU cores (``cpu``): ~30 s per temperature once the generators and judges are cached; training
them from scratch ~10 min (generators) + ~7 min (judges).
"""

from __future__ import annotations

import argparse

import torch

from rotcore import report
from rotcore.studies import cvae as study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(study.PROFILES))
    parser.add_argument("--temperatures", nargs="+", type=float, default=[1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    parser.add_argument("--draws", type=int, default=12)
    args = parser.parse_args(argv)
    cfg = report.resolve_config(study, args.profile)
    data = study.load_data(cfg, "cpu")
    digit_judge, _ = study.load_judges(cfg, "cpu")
    trained = study.train_all(cfg, data, device="cpu")
    seen = [a for a in cfg.eval_angles_deg if any(lo <= a < hi for lo, hi in cfg.train_angles_deg)]
    print("trained angles judged:", seen)
    default = study.SAMPLE_TEMPERATURE
    try:
        for temp in args.temperatures:
            study.SAMPLE_TEMPERATURE = temp
            out: dict[str, list[float]] = {}
            for t in trained:
                d, a, z = study.generation_grid(cfg, "cpu", seed=t.seed, angles_deg=seen,
                                                samples_per_cell=args.draws, draw_seed_offset=1000)
                x = study.generate(t.model, d, a, z, batch_size=cfg.eval_batch_size)
                pred = digit_judge.predict(x, batch_size=cfg.eval_batch_size).cpu()
                d, a = d.cpu(), a.cpu()
                keep = ~(((d == 6) | (d == 9)) & ((a - 180).abs() <= study.SIX_NINE_BAND_DEG))
                out.setdefault(t.key, []).append(100 * (pred == d)[keep].float().mean().item())
            print(f"T = {temp:g}: " + "; ".join(f"{k} {' / '.join(f'{v:.1f}' for v in vs)}" for k, vs in out.items()),
                  flush=True)
    finally:
        study.SAMPLE_TEMPERATURE = default
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
