"""``nucleikit experiment NAME --config FILE -o OUTDIR``: one of Xing et al.'s transfer studies."""

from __future__ import annotations

import argparse

from .options import output_folder, positive_int

DESCRIPTION = """Run a transfer or data-mixing study (Xing et al. 2019) on the data sets a JSON
configuration names: cross_dataset (train on each, test on every one), finetune (against scratch,
by share of target data, from base snapshots, with frozen blocks), auxiliary (pooled auxiliary data,
gamma-weighted loss), lambda (the weighted MSE's lambda), baselines (MicroNet vs FCRN-A/B, U-Net),
pooled (one detector trained on several data sets at once, tested on each, and which threshold rule
transfers to a data set it was not tuned on), distill (a narrower student trained on a teacher
detector's maps of the labelled training images and of unlabelled slide tiles, tested beside it).
Everything is checked before training starts; each training runs in OUTDIR/runs/<name>-<hash> and
running the command again skips finished trainings and resumes an interrupted one. Outputs:
OUTDIR/report.md, results.json, one CSV per table, figures/*.png. Examples: configs/experiments/."""


#: The registry's names (a test checks that they agree).
STUDY_NAMES = ("cross_dataset", "finetune", "auxiliary", "lambda", "baselines", "pooled", "distill")


def add_arguments(p: argparse.ArgumentParser) -> None:
    # names written out (not imported from the registry) so that `--help` stays instant;
    # an unknown name is refused by the configuration loader with the registry's list
    p.add_argument("name", metavar="NAME", help=f"the study: {', '.join(STUDY_NAMES)}")
    p.add_argument("--config", required=True, metavar="FILE", help="JSON experiment configuration")
    p.add_argument("-o", "--out", required=True, type=output_folder, metavar="OUTDIR",
                   help="report, tables, figures and run folders")
    p.add_argument("--runs", default=None, type=output_folder, metavar="DIR",
                   help="folder of the training runs (default OUTDIR/runs); studies sharing it share trainings")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="training budget: steps of every training (overrides the configuration)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: the configuration's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..experiments.config import load_config
    from ..experiments.runner import run_experiment

    config = load_config(args.config, experiment=args.name).with_overrides(steps=args.steps, threads=args.threads)
    command = f"nucleikit experiment {args.name} --config {args.config} -o {args.out}"
    for flag, value in (("--runs", args.runs), ("--steps", args.steps), ("--threads", args.threads)):
        if value is not None:
            command += f" {flag} {value}"
    report = run_experiment(config, args.out, runs_dir=args.runs, progress=not args.no_progress, command=command)
    print(f"{args.name}: report {report}")
    return 0
