"""Does R2U-Net beat U-Net? Alom et al.'s claim on DSB2018, at equal steps and equal training time, 3 seeds.

Alom et al. (2022) report R2U-Net above U-Net on the 2018 Data Science Bowl. This study trains
both of the paper's binary networks (``r2unet``, ``unet``; about 0.98 M parameters each) on the
PROTOCOL.md DSB2018 split with the same recipe (``configs/r2unet_vs_unet_dsb2018.json``: Adam
1e-3 at a constant rate, batch 16, 96-pixel crops, percentile intensity, fp32) and the same seeds.
A seed fixes both the initial weights and the sequence of training crops, so the two networks of
one seed see the same data in the same order and their difference is a paired one.

* **Equal steps**: both networks after ``--steps`` optimisation steps.
* **Equal training time**: R2U-Net after ``--steps`` steps against U-Net at the last validation
  within the same optimisation time. The time per step of each network is measured with the two
  taking turns step by step (``speed``); without that probe, the runs' own clocks (``train_s`` in the log:
  steps only, no validation or saving) decide. U-Net runs ``--unet-steps`` so it can get there.

Scores are on the 134 validation images (Dice and DSB score at the threshold tuned on them, as
training selects its weights); the test images stay untouched. A verdict says "holds" only when
every seed agrees, otherwise the difference is within the seed-to-seed noise.

Usage (``speed`` first; trainings run one after another; run again to resume)::

    python benchmarks/r2unet_vs_unet.py speed --runs ~/nucleikit-runs/r2unet_vs_unet
    python benchmarks/r2unet_vs_unet.py run --runs ~/nucleikit-runs/r2unet_vs_unet
    python benchmarks/r2unet_vs_unet.py report --runs ~/nucleikit-runs/r2unet_vs_unet

``report`` writes ``docs/experiments/r2unet_vs_unet/`` (report.md, results.json, curves.png).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from _common import machine, shared_data

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "r2unet_vs_unet_dsb2018.json"
#: The third arm, ``--step-norm``: R2U-Net with one BatchNorm per recurrent step, same recipe.
STEP_NORM_CONFIG = HERE.parent / "configs" / "r2unet_vs_unet_dsb2018_step_norm.json"
STEP_NORM = "r2unet_step_norm"
DOCS = HERE.parent / "docs" / "experiments" / "r2unet_vs_unet"
MODELS = ("r2unet", "unet")


def run_dir(runs: Path, model: str, seed: int) -> Path:
    return runs / f"{model}_seed{seed}"


def train_all(args: argparse.Namespace) -> None:
    """Train every (seed, model) pair in turn; a finished pair is skipped, a cut one resumes."""
    data = shared_data()
    if args.unet_steps is None:
        # U-Net's last step lands exactly on R2U-Net's training time (its final validation is there)
        speed = json.loads((args.runs / "speed.json").read_text())
        args.unet_steps = int(np.ceil(args.steps * speed["s_per_step"]["r2unet"] / speed["s_per_step"]["unet"]))
    arms = [("r2unet", "r2unet", args.steps, CONFIG), ("unet", "unet", args.unet_steps, CONFIG)]
    if args.step_norm:
        arms.append((STEP_NORM, "r2unet", args.steps, STEP_NORM_CONFIG))
    for seed in args.seeds:
        for arm, model, steps, config in arms:
            out = run_dir(args.runs, arm, seed)
            done = [r["step"] for r in read_log(out)]
            if done and max(done) >= steps:
                continue
            cmd = [sys.executable, "-m", "nucleikit", "train", "segmentation", "--dataset", "dsb2018",
                   "--data-root", str(data), "--config", str(config), "--model", model, "--seed", str(seed),
                   "--steps", str(steps), "--val-every", str(args.val_every), "--no-progress", "-o", str(out)]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)


def probe_speed(args: argparse.Namespace) -> dict:
    """Seconds per optimisation step of each network, the two taking turns step by step.

    The runs' own ``train_s`` clocks are taken at different times, so other work on the machine
    skews them; this probe (same batch, same threads, alternating steps) is the clock the
    equal-time comparison uses. Written to ``RUNS/speed.json``.
    """
    import time

    import torch

    from nucleikit.losses import get_loss
    from nucleikit.models.registry import build_model, get_spec

    cfg = json.loads(CONFIG.read_text())
    torch.set_num_threads(int(cfg["threads"]))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(cfg["batch_size"], 3, cfg["crop"], cfg["crop"], generator=gen)
    y = (torch.rand(cfg["batch_size"], 1, cfg["crop"], cfg["crop"], generator=gen) > 0.7).float()
    result = {"machine": machine(), "batch_size": cfg["batch_size"], "crop": cfg["crop"], "s_per_step": {}}
    arms = {"r2unet": ("r2unet", {}), "unet": ("unet", {})}
    if args.step_norm:  # the third arm against U-Net, in a probe of its own (speed_step_norm.json)
        arms = {STEP_NORM: ("r2unet", {"step_norm": True}), "unet": ("unet", {})}
    nets = {}
    for arm, (model_name, kwargs) in arms.items():
        torch.manual_seed(0)
        model = build_model(model_name, **kwargs).train()
        nets[arm] = (model, get_loss(get_spec(model_name).loss), torch.optim.Adam(model.parameters(), lr=cfg["lr"]))
    times: dict[str, list[float]] = {m: [] for m in arms}
    # the two networks take turns, step by step, so any other load on the machine slows both alike
    for i in range(args.probe_steps + 3):
        for model_name, (model, loss_fn, opt) in nets.items():
            t = time.perf_counter()
            loss = loss_fn(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= 3:  # the first steps allocate and warm up
                times[model_name].append(time.perf_counter() - t)
    for arm in arms:
        result["s_per_step"][arm] = float(np.median(times[arm]))
        print(f"{arm}: {result['s_per_step'][arm]:.3f} s/step (median of {len(times[arm])})", flush=True)
    args.runs.mkdir(parents=True, exist_ok=True)
    (args.runs / ("speed_step_norm.json" if args.step_norm else "speed.json")).write_text(json.dumps(result, indent=1) + "\n")
    return result


def read_log(out: Path) -> list[dict]:
    path = out / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare(logs: dict[tuple[str, int], list[dict]], steps: int, speed_ratio: float | None = None) -> list[dict]:
    """One row per seed: both networks at equal steps and at R2U-Net's training time.

    Parameters
    ----------
    logs : dict
        ``(model, seed) -> validation records`` (``step``, ``train_s``, ``val_dice``, ``val_dsb``).
    steps : int
        The step of the equal-steps comparison (R2U-Net's last).
    speed_ratio : float, optional
        R2U-Net's seconds per step over U-Net's, from the alternating-step probe: U-Net's equal-time
        point is its last validation at or before ``ceil(steps * speed_ratio)``. Without it, the
        runs' own ``train_s`` clocks decide.
    """
    rows = []
    for seed in sorted({s for _, s in logs}):
        r2u, u = logs.get(("r2unet", seed), []), logs.get(("unet", seed), [])
        at_r2u = next((r for r in r2u if r["step"] == steps), None)
        at_u = next((r for r in u if r["step"] == steps), None)
        if at_r2u is None or at_u is None:
            continue
        budget = at_r2u["train_s"]
        if speed_ratio is not None:
            last = int(np.ceil(steps * speed_ratio - 1e-9))  # `run` trains U-Net to exactly this step
            within = [r for r in u if r["step"] <= last]
            reached = u[-1]["step"] >= last
        else:
            within = [r for r in u if r["train_s"] <= budget]
            reached = u[-1]["train_s"] >= budget
        same_time = within[-1] if within else u[0]
        rows.append({
            "seed": seed,
            "r2unet_dice": at_r2u["val_dice"], "r2unet_dsb": at_r2u["val_dsb"],
            "r2unet_train_s": budget, "r2unet_s_per_step": budget / steps,
            "unet_dice_same_steps": at_u["val_dice"], "unet_dsb_same_steps": at_u["val_dsb"],
            "unet_s_per_step": at_u["train_s"] / steps,
            "unet_step_same_time": same_time["step"], "unet_train_s_same_time": same_time["train_s"],
            "unet_dice_same_time": same_time["val_dice"], "unet_dsb_same_time": same_time["val_dsb"],
            "unet_reached_the_time": bool(reached),
        })
    return rows


def verdict(r2u: np.ndarray, u: np.ndarray) -> str:
    """'R2U-Net better' / 'U-Net better' only if every seed's paired difference agrees (2 seeds at least)."""
    d = np.asarray(r2u) - np.asarray(u)
    if len(d) < 2:
        return "one seed only: no verdict"
    if len(d) and np.all(d > 0):
        return "R2U-Net better on every seed"
    if len(d) and np.all(d < 0):
        return "U-Net better on every seed"
    return "within the seed-to-seed noise"


def spread(v) -> str:
    v = np.asarray(v, float)
    return f"{v.mean():.3f} ({v.min():.3f}-{v.max():.3f})"


def report(args: argparse.Namespace) -> None:
    logs = {(m, s): read_log(run_dir(args.runs, m, s)) for m in (*MODELS, STEP_NORM) for s in args.seeds}
    speed_path = args.runs / "speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.exists() else None
    ratio = speed["s_per_step"]["r2unet"] / speed["s_per_step"]["unet"] if speed else None
    rows = compare({k: v for k, v in logs.items() if k[0] in MODELS}, args.steps, ratio)
    sn_path = args.runs / "speed_step_norm.json"
    sn_speed = json.loads(sn_path.read_text()) if sn_path.exists() else None
    sn_ratio = sn_speed["s_per_step"][STEP_NORM] / sn_speed["s_per_step"]["unet"] if sn_speed else None
    # the third arm is compared with the same U-Net runs (same seeds, same crops)
    sn_rows = compare({**{("r2unet", s): v for (m, s), v in logs.items() if m == STEP_NORM},
                       **{k: v for k, v in logs.items() if k[0] == "unet"}}, args.steps, sn_ratio)
    if not rows:
        sys.exit(f"no finished seed pair under {args.runs}")
    col = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    summary = {
        "equal_steps": {
            "steps": args.steps,
            "dice": verdict(col["r2unet_dice"], col["unet_dice_same_steps"]),
            "dsb": verdict(col["r2unet_dsb"], col["unet_dsb_same_steps"]),
        },
        "equal_time": {
            "dice": verdict(col["r2unet_dice"], col["unet_dice_same_time"]),
            "dsb": verdict(col["r2unet_dsb"], col["unet_dsb_same_time"]),
        },
    }
    if sn_rows:
        sn = {k: np.array([r[k] for r in sn_rows]) for k in sn_rows[0]}
        summary["step_norm"] = {
            "seeds": len(sn_rows),
            "equal_steps": {"dice": verdict(sn["r2unet_dice"], sn["unet_dice_same_steps"]),
                            "dsb": verdict(sn["r2unet_dsb"], sn["unet_dsb_same_steps"])},
            "equal_time": {"dice": verdict(sn["r2unet_dice"], sn["unet_dice_same_time"]),
                           "dsb": verdict(sn["r2unet_dsb"], sn["unet_dsb_same_time"])},
        }
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "results.json").write_text(json.dumps(
        {"machine": machine(), "speed_probe": speed, "speed_probe_step_norm": sn_speed,
         "config": json.loads(CONFIG.read_text()), "steps": args.steps, "seeds": rows, "step_norm_seeds": sn_rows,
         "summary": summary, "logs": {f"{m}_seed{s}": v for (m, s), v in logs.items() if v}},
        indent=1) + "\n")
    per_step = {**(sn_speed or {}).get("s_per_step", {}), **(speed or {}).get("s_per_step", {})}
    plot(logs, DOCS / "curves.png", per_step)
    m = machine()
    n = len(rows)
    lines = [
        "# R2U-Net against U-Net on DSB2018 (Alom et al.'s claim), equal steps and equal training time",
        "",
        f"{n} seeds; validation images of `../shared/splits/dsb2018.json` (134); recipe "
        f"`configs/r2unet_vs_unet_dsb2018.json` (Adam 1e-3 constant, batch 16, crop 96, fp32); "
        f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}. Mean over seeds (min-max).",
        "",
        "| comparison | R2U-Net Dice | U-Net Dice | R2U-Net DSB score | U-Net DSB score | verdict (Dice / DSB) |",
        "|---|---|---|---|---|---|",
        f"| equal steps ({args.steps}) | {spread(col['r2unet_dice'])} | {spread(col['unet_dice_same_steps'])} | "
        f"{spread(col['r2unet_dsb'])} | {spread(col['unet_dsb_same_steps'])} | "
        f"{summary['equal_steps']['dice']} / {summary['equal_steps']['dsb']} |",
        f"| equal training time (U-Net at step "
        f"{col['unet_step_same_time'].mean():.0f} on average) | {spread(col['r2unet_dice'])} | "
        f"{spread(col['unet_dice_same_time'])} | {spread(col['r2unet_dsb'])} | {spread(col['unet_dsb_same_time'])} | "
        f"{summary['equal_time']['dice']} / {summary['equal_time']['dsb']} |",
        "",
        (f"Equal time from the alternating-step speed probe (`speed`): R2U-Net {speed['s_per_step']['r2unet']:.3f} s/step, "
         f"U-Net {speed['s_per_step']['unet']:.3f} s/step (ratio {ratio:.2f}), so U-Net's equal-time point is its "
         f"last validation at or before step {int(np.ceil(args.steps * ratio - 1e-9))}." if speed else
         "Equal time from the runs' own optimisation clocks (`train_s`; no speed probe was run)."),
        "",
        f"Seconds per optimisation step as the runs measured them (other work on the machine skews these): "
        f"R2U-Net {spread(col['r2unet_s_per_step'])}, U-Net {spread(col['unet_s_per_step'])}.",
        "",
        "Per seed:",
        "",
        "| seed | R2U-Net Dice / DSB | U-Net same steps | U-Net same time (step) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['r2unet_dice']:.3f} / {r['r2unet_dsb']:.3f} | "
                     f"{r['unet_dice_same_steps']:.3f} / {r['unet_dsb_same_steps']:.3f} | "
                     f"{r['unet_dice_same_time']:.3f} / {r['unet_dsb_same_time']:.3f} ({r['unet_step_same_time']}) |")
    if not all(r["unet_reached_the_time"] for r in rows):
        lines += ["", "U-Net did not run for as long as R2U-Net on every seed: its equal-time figure is its last."]
    if sn_rows:
        sv = summary["step_norm"]
        lines += [
            "", f"## R2U-Net with one BatchNorm per recurrent step (`step_norm=True`), {len(sn_rows)} of "
            f"{len(args.seeds)} seeds finished",
            "", "The paper's recurrent layer shares one BatchNorm across its steps, so evaluation normalises every "
            "step with statistics averaged over all of them; this arm gives each step its own "
            "(`configs/r2unet_vs_unet_dsb2018_step_norm.json`), against the same U-Net runs.", "",
            "| comparison | R2U-Net (per-step BN) Dice | U-Net Dice | R2U-Net (per-step BN) DSB | U-Net DSB | verdict (Dice / DSB) |",
            "|---|---|---|---|---|---|",
            f"| equal steps ({args.steps}) | {spread(sn['r2unet_dice'])} | {spread(sn['unet_dice_same_steps'])} | "
            f"{spread(sn['r2unet_dsb'])} | {spread(sn['unet_dsb_same_steps'])} | "
            f"{sv['equal_steps']['dice']} / {sv['equal_steps']['dsb']} |",
            f"| equal training time (U-Net at step {sn['unet_step_same_time'].mean():.0f} on average) | "
            f"{spread(sn['r2unet_dice'])} | {spread(sn['unet_dice_same_time'])} | {spread(sn['r2unet_dsb'])} | "
            f"{spread(sn['unet_dsb_same_time'])} | {sv['equal_time']['dice']} / {sv['equal_time']['dsb']} |",
        ]
    lines += ["", "![validation curves](curves.png)", "",
              "Reproduce: `python benchmarks/r2unet_vs_unet.py run --runs RUNS` then "
              "`python benchmarks/r2unet_vs_unet.py report --runs RUNS` "
              f"(`--steps {args.steps} --val-every {args.val_every}`).", ""]
    (DOCS / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))


def plot(logs: dict, path: Path, s_per_step: dict[str, float] | None = None) -> None:
    """Validation Dice against steps and against optimisation time.

    Time is ``step * s_per_step[arm]`` at the probed speeds when given (the runs' own clocks
    include whatever else ran on the machine), else the runs' ``train_s``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    colours = {"r2unet": "tab:red", "unet": "tab:blue", STEP_NORM: "tab:orange"}
    for (model, seed), recs in sorted(logs.items()):
        if not recs:
            continue
        label = model if seed == min(s for m, s in logs if m == model) else None
        axes[0].plot([r["step"] for r in recs], [r["val_dice"] for r in recs], color=colours[model], label=label)
        minutes = ([r["step"] * s_per_step[model] / 60 for r in recs] if s_per_step and model in s_per_step
                   else [r["train_s"] / 60 for r in recs])
        axes[1].plot(minutes, [r["val_dice"] for r in recs], color=colours[model])
    axes[0].set_xlabel("optimisation step")
    axes[1].set_xlabel("optimisation time at the probed speed (min)" if s_per_step else "optimisation time (min)")
    axes[0].set_ylabel("validation Dice")
    axes[0].legend()
    fig.suptitle("DSB2018 validation, one line per seed")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["speed", "run", "report"])
    p.add_argument("--runs", type=Path, required=True, help="folder of the six runs (outside the repository)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=600, help="R2U-Net's steps (the equal-steps point)")
    p.add_argument("--unet-steps", type=int, default=None,
                   help="U-Net's steps (default: R2U-Net's training time at the probed speeds)")
    p.add_argument("--val-every", type=int, default=200)
    p.add_argument("--probe-steps", type=int, default=10, help="timed steps per network for `speed`")
    p.add_argument("--step-norm", action="store_true",
                   help="the third arm: R2U-Net with one BatchNorm per recurrent step (`speed` probes it against "
                        "U-Net, `run` trains it after each seed's pair, `report` adds it)")
    args = p.parse_args()
    if args.steps % args.val_every or (args.unet_steps is not None and args.unet_steps < args.steps):
        p.error("--steps must be a multiple of --val-every and --unet-steps at least --steps")
    if args.action == "run" and args.unet_steps is None and not (args.runs / "speed.json").exists():
        p.error(f"run `speed` first (no {args.runs / 'speed.json'}), or give --unet-steps")
    if args.action == "speed":
        probe_speed(args)
    elif args.action == "run":
        train_all(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
