"""How reliably each variant trains: many seeds at the `resvae compare` defaults.

Never part of the test suite. It trains every variant with seeds 0..N-1 through
`keras_resvae.compare.run_comparison` (the same runs as `resvae compare
--repeats N`, resumable in the same folder), then prints one row per variant:
how many runs stalled (stuck at the mean image, `keras_resvae.stall`), and the
test MSE of every run, with its mean, standard deviation and range.

Examples:
    # the study's headline configuration, 10 seeds, on the default backend:
    python benchmarks/seed_sweep.py --variants resnet18-nobn-tanh --seeds 10
    # every ResNet configuration, on PyTorch:
    KERAS_BACKEND=torch python benchmarks/seed_sweep.py --seeds 10 \\
        --variants resnet18-bn,resnet18-nobn,resnet50-bn,resnet50-nobn --center
    # the rows of a sweep cut short, from the runs it finished:
    python benchmarks/seed_sweep.py --variants resnet18-nobn-tanh --seeds 10 --table-only
"""

import argparse
import csv
import json
import os
import statistics

import keras
from comma_lists import comma_list

from keras_resvae.compare import run_comparison, variant_names, variant_run_folder

EVAL = "evaluation.json"


def _stalled(folder):
    with open(os.path.join(folder, "history.csv"), newline="") as file:
        last = list(csv.DictReader(file))[-1]
    return last.get("stalled") == "1.0"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="resnet18-nobn-tanh")
    parser.add_argument("--center", action="store_true", help="also each variant's -tanh twin")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=None, help="default: compare's")
    parser.add_argument("--out", default=None, help="default: reports/seed-sweep-<backend>")
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="train nothing: tabulate the runs already finished in --out (a sweep cut short)",
    )
    args = parser.parse_args(argv)
    backend = keras.backend.backend()
    out = args.out or os.path.join("reports", f"seed-sweep-{backend}")
    names = variant_names(comma_list(args.variants), args.center)
    options = {"dataset": args.dataset, "seed": args.first_seed}
    if args.epochs:
        options["epochs"] = args.epochs
    if not args.table_only:
        run_comparison(out, names, repeats=args.seeds, iwae_samples=0, verbose=0, **options)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(f"\n{args.seeds} seeds per variant, {backend} backend, dataset {args.dataset}")
    print("| variant | stalled runs | test MSE mean ± sd | min | max | MSE per seed |")
    print("|---|---|---|---|---|---|")
    for name in names:
        folders = {seed: variant_run_folder(out, name, seed, args.first_seed) for seed in seeds}
        finished = {
            seed: folder
            for seed, folder in folders.items()
            if os.path.exists(os.path.join(folder, EVAL))
        }
        if not finished:
            print(f"| {name} | no seed finished yet | | | | |")
            continue
        mses = []
        for folder in finished.values():
            with open(os.path.join(folder, EVAL)) as file:
                mses.append(json.load(file)["mse"])
        stalled = [seed for seed, folder in finished.items() if _stalled(folder)]
        spread = statistics.stdev(mses) if len(mses) > 1 else 0.0
        stalled_cell = f"{len(stalled)} of {len(finished)}"
        stalled_cell += f" (seeds {stalled})" if stalled else ""
        print(
            f"| {name} | {stalled_cell} | {statistics.fmean(mses):.4f} ± {spread:.4f} | "
            f"{min(mses):.4f} | {max(mses):.4f} | {' '.join(f'{m:.4f}' for m in mses)} |"
        )


if __name__ == "__main__":
    main()
