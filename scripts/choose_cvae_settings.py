"""Choose study 01's training settings (batch size, β, epochs) on validation digits, never test digits.

Trains the chosen models at every point of a small grid on the profile's training digits, scores each with
:func:`rotcore.studies.cvae.validation_scores` (prior samples at trained angles read by the digit judge, and
validation digits encoded at one training angle and drawn at another) and prints the table and the choice:
the best point whose training images fit the profile's budget (``CPU_MAX_IMAGES`` for ``cpu``). Paste the
chosen values into the ``CPU_*`` constants of ``rotcore/studies/cvae.py``.

    ROTBOOK_ROOT=. python scripts/choose_cvae_settings.py --profile cpu
    python scripts/choose_cvae_settings.py --profile smoke --batch-sizes 32 --betas 1 --epochs 1   # a quick try

Cost on 2 CPU cores (``cpu`` profile, one model, one seed, the default grid): each point trains epochs x 10k
images at ~1.05 ms per image, so 4 epochs ~42 s and 8 epochs ~84 s; 8 points ~8.5 min, plus the judges when
they are not cached (~7 min).
"""

from __future__ import annotations

import argparse

import pandas as pd

from rotcore import report
from rotcore.studies import cvae as study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(study.PROFILES))
    parser.add_argument("--models", nargs="+", default=["latent"], choices=list(study.MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[100])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=list(study.SettingsGrid().batch_size))
    parser.add_argument("--betas", nargs="+", type=float, default=list(study.SettingsGrid().beta))
    parser.add_argument("--epochs", nargs="+", type=int, default=list(study.SettingsGrid().epochs))
    parser.add_argument("--max-images", type=int, default=None,
                        help="training images per model and seed the budget affords (cpu: CPU_MAX_IMAGES)")
    parser.add_argument("--rank-by", nargs="+", default=["sample_acc_seen_pct", "val_pair_acc_pct"],
                        choices=["sample_acc_seen_pct", "val_pair_acc_pct"],
                        help="columns to rank by, higher first (later ones break ties)")
    args = parser.parse_args(argv)

    cfg = report.resolve_config(study, args.profile)
    max_images = args.max_images if args.max_images is not None else (
        study.CPU_MAX_IMAGES if args.profile == "cpu" else None)
    grid = study.SettingsGrid(batch_size=tuple(args.batch_sizes), beta=tuple(args.betas), epochs=tuple(args.epochs))
    data = study.load_data(cfg)
    digit_judge, _ = study.load_judges(cfg)
    table, chosen = study.choose_settings(cfg, data, digit_judge, grid=grid, models=args.models, seeds=args.seeds,
                                          max_images=max_images, rank_by=args.rank_by)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.round(2).to_string(index=False))
    if chosen is None:
        print(f"no grid point fits the budget of {max_images:,} training images per model and seed")
        return 1
    print(f"\nchosen on validation (models {', '.join(args.models)}; seeds {', '.join(map(str, args.seeds))}; "
          f"ranked by {', '.join(args.rank_by)}):")
    print(f"CPU_BATCH_SIZE = {int(chosen['batch_size'])}\nCPU_BETA = {chosen['beta']:g}\nCPU_EPOCHS = {int(chosen['epochs'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
