"""Nucleus classification on CRCHisto: fixed split, five folds, speed, typed nuclei end to end.

    python benchmarks/classification.py --weights-dir RUNS [--models densenet dcrn] [--threads 2]
                                        [--detector micronet] [--limit-images N]
                                        [--speed-patches N] [--protocol image|patch] [--tta N]

Evaluates trained classifiers; it never trains (train them with
benchmarks/train_classifiers.sh). RUNS holds ``<model>/fold<k>/best.safetensors``
for k = 0..4; the fixed split of PROTOCOL.md is fold 4 (the same train,
validation and test images), so ``fold4`` gives the fixed-split figures. A
missing fold is reported and the cross-validation summary says over how many
folds it is taken.

Per PROTOCOL.md section 1 ("Classification"): patches centred on the
classified nuclei of each test image (the classifier's own patch size and
resolution), accuracy, per-class P/R/F1, weighted F1 (the papers' headline)
and macro F1, one-vs-rest ROC AUC, average precision, confusion matrix; the
cross-validation summary is mean +- sample standard deviation (ddof = 1) over
the folds. Plots (benchmarks/results/classification_*.png): F1 box plot over
the folds for both models, ROC and PR curves and confusion matrices on the
fixed split, and a UMAP embedding of the bottleneck features of the
fixed-split test patches when umap-learn is installed (extra "umap";
otherwise skipped with a message).

Speed (PROTOCOL.md section 4) at --threads on the patches of the first
fixed-split test images that hold at least --speed-patches patches (default
1500; 0 times all 5,379):
``nucleikit.infer.classify.Classifier.predict_patches`` (channels_last,
inference_mode, fp32 and bf16) and the whole per-image path
(``Classifier.classify``: resample, cut, predict; images already in memory)
against a plain fp32 eager forward pass of the same network (NCHW,
``torch.no_grad``, same batches, same standardisation), in the same run.

Typed nuclei end to end (PROTOCOL.md "Detection + classification end to
end"): the detector (--detector, bundled name or file) and each fixed-split
classifier type every nucleus of the 20 test images
(``nucleikit.infer.pipelines.analyze_image``), scored against the classified
truth at r = 6 px (F_d, F1_c, their support-weighted mean, type accuracy).
Skipped with a message when the detector weights are missing.

Stain shift: the fixed-split test patches re-stained as another lab might
stain them (haematoxylin optical density x1.6, eosin x1.4 + 0.1, in
scikit-image's H-E-DAB deconvolution: darker and more purple, like the
bundled skin sample), scored as they are and after
``PatchInferenceConfig.stain_normalise`` (Reinhard, per image, to the
training patches' L*a*b* moments); the untouched patches are scored both
ways too. Skipped when the weights carry no ``lab_mean``
(tools/stain_moments.py adds it).

The fixed-split studies (plots, speed, stain shift, typed end to end) use
fold 4 of --weights-dir, or with ``--fixed-weights bundled`` the weights that
ship in the package (what ``nucleikit analyze`` runs); the cross-validation
summary always comes from --weights-dir.

``--limit-images N`` keeps the first N test images of each fold: a smoke
test whose figures are labelled as such in the JSON and are not protocol
figures.

``--protocol patch`` scores Alom et al.'s protocol instead, beside the
headline and never as it: RUNS holds ``<model>/patch/best.safetensors``
(``PROTOCOL=patch benchmarks/train_classifiers.sh``), trained on the
patch-level random split of all classified CRCHisto patches
(:func:`nucleikit.train.patches.crchisto_patch_split`: 70/10/20 per class,
seed 0; patches of one image on both sides); its test patches are scored
once, with the same figures, into ``results/classification_patch.json``.
With ``--limit-images N`` the split is drawn over the first N images only,
as the training did (a smoke test).

``--tta N`` classifies with N flips/rotations per patch (default: what each
weights file records, 1 for the bundled ones).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _common import RESULTS, machine, save, shared_data

FOLDS = (0, 1, 2, 3, 4)
FIXED_FOLD = 4


# --------------------------------------------------------------------------- evaluation


def fold_weights(weights_dir: Path, model: str) -> dict[int, Path]:
    found = {}
    for k in FOLDS:
        path = weights_dir / model / f"fold{k}" / "best.safetensors"
        if path.is_file():
            found[k] = path
    return found


def test_patches(root: Path, fold: int, clf, limit: int | None):
    from nucleikit.io.datasets.crchisto import CRCHisto
    from nucleikit.train.patches import PatchSet

    samples = list(CRCHisto(root, split=fold, subset="test", task="classification"))
    samples = samples[:limit] if limit else samples
    return samples, PatchSet.from_samples(samples, classes=clf.classes, patch=clf.patch, mpp=clf.mpp)


def speed_subset(samples, ps, n: int):
    """The first test images holding at least ``n`` patches, and their patches (all when ``n`` is 0).

    Timing every fixed-split patch eight times takes longer than the figure is
    worth on 2 cores; a prefix of whole images keeps the per-image path and the
    patch path on the same patches.
    """
    if n <= 0:
        return samples, ps.patches
    counts = np.array([len(s.points) for s in samples])
    k = int(min(np.searchsorted(np.cumsum(counts), n) + 1, len(samples)))
    keep = np.isin(ps.image_ids, [s.id for s in samples[:k]])
    return samples[:k], ps.patches[keep]


def evaluate_fold(path: Path, root: Path, fold: int, config, limit: int | None):
    """(classifier, test samples, test patches, probabilities, classification report) of one fold's weights."""
    from nucleikit.infer.classify import Classifier
    from nucleikit.metrics import classification_report

    clf = Classifier.from_weights(path, config=config)
    samples, ps = test_patches(root, fold, clf, limit)
    probs = clf.predict_patches(ps.patches)
    names = np.asarray(clf.classes)
    report = classification_report(names[ps.labels], names[probs.argmax(axis=1)], probs, clf.classes)
    report["test_images"] = [s.id for s in samples]
    report["weights"] = str(path)
    report["epoch"] = clf.meta.get("epoch")
    report["num_params"] = clf.meta.get("num_params")
    return clf, samples, ps, probs, report


def summary(values: list[float | None]) -> dict:
    """Mean and sample std (ddof = 1) over the folds where the figure is defined."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return {
        "mean": float(a.mean()) if a.size else None,
        "std": float(a.std(ddof=1)) if a.size > 1 else None,
        "folds": len(a),
        "values": a.tolist(),
    }


def reference_patch_forward(model, patches: np.ndarray, mean, std, batch_size: int) -> float:
    """Seconds for a plain fp32 eager pass (NCHW, no_grad) from uint8 patches to probabilities."""
    import torch

    model = model.to(memory_format=torch.contiguous_format).eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(patches), batch_size):
            x = (patches[start : start + batch_size].astype(np.float32) / 255.0 - mean) / std
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            torch.softmax(model(xt), dim=1)
    return time.perf_counter() - t0


def measure_speed(path: Path, samples, patches: np.ndarray, threads: int, batch_size: int, repeat: int) -> dict:
    import torch

    from nucleikit.infer.classify import Classifier, PatchInferenceConfig
    from nucleikit.models.weights import load_weights

    torch.set_num_threads(threads)
    model, meta = load_weights(path)
    mean = np.asarray(meta["mean"], np.float32)
    std = np.asarray(meta["std"], np.float32)
    n = len(patches)
    reference_patch_forward(model, patches[:batch_size], mean, std, batch_size)  # warm-up
    row = {"patches": n, "threads": threads, "batch_size": batch_size}
    row["reference_fp32_s"] = min(reference_patch_forward(model, patches, mean, std, batch_size) for _ in range(repeat))
    images = [(s.load_image(), s.points, s.mpp) for s in samples]
    for variant, bf16 in (("fp32", False), ("bf16", True)):
        config = PatchInferenceConfig(batch_size=batch_size, threads=threads, bf16=bf16)
        clf = Classifier.from_weights(path, config=config)
        clf.predict_patches(patches[:batch_size])  # warm-up
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            clf.predict_patches(patches)
            best = min(best, time.perf_counter() - t0)
        row[f"predict_{variant}_s"] = best
        if variant == "fp32":
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                for pixels, xy, mpp in images:
                    clf.classify(pixels, xy, mpp=mpp)
                best = min(best, time.perf_counter() - t0)
            row["classify_images_fp32_s"] = best
    ref = n / row["reference_fp32_s"]
    row["reference_patches_per_s"] = ref
    for key in ("predict_fp32", "predict_bf16", "classify_images_fp32"):
        rate = n / row[f"{key}_s"]
        row[f"{key}_patches_per_s"] = rate
        row[f"{key}_ratio"] = rate / ref
        row[f"{key}_ms_per_patch"] = 1000.0 * row[f"{key}_s"] / n
    return row


#: The synthetic stain change of the stain-shift study: (H, E, DAB) optical density scale and shift.
STAIN_SHIFT = ((1.6, 1.4, 1.0), (0.0, 0.1, 0.0))


def stain_shift_study(clf, ps) -> dict | None:
    """Weighted F1 on the test patches as they are and re-stained, each without and with normalisation."""
    from nucleikit.metrics import classification_report
    from nucleikit.transforms import jitter_stains, reinhard_normalise

    if "lab_mean" not in clf.meta:
        print(f"stain shift skipped: {clf.name} has no lab_mean (tools/stain_moments.py)")
        return None
    scale = np.asarray(STAIN_SHIFT[0], np.float64).reshape(1, 1, 1, 3)
    shift = np.asarray(STAIN_SHIFT[1], np.float64).reshape(1, 1, 1, 3)
    shifted = np.rint(jitter_stains(ps.patches.astype(np.float32) / 255.0, scale, shift) * 255.0).astype(np.uint8)

    def normalised(patches: np.ndarray) -> np.ndarray:
        out = np.empty_like(patches)
        for image_id in np.unique(ps.image_ids):  # one image's nuclei together, as Classifier.classify does
            sel = ps.image_ids == image_id
            out[sel] = reinhard_normalise(patches[sel], clf.meta["lab_mean"], clf.meta["lab_std"])
        return out

    names = np.asarray(clf.classes)
    out: dict = {"scale": list(STAIN_SHIFT[0]), "shift": list(STAIN_SHIFT[1])}
    for key, patches in (("original", ps.patches), ("original_normalised", normalised(ps.patches)),
                         ("shifted", shifted), ("shifted_normalised", normalised(shifted))):
        probs = clf.predict_patches(patches)
        r = classification_report(names[ps.labels], names[probs.argmax(axis=1)], probs, clf.classes)
        out[key] = {k: r[k] for k in ("accuracy", "weighted_f1", "macro_f1")}
        out[key]["predicted_share"] = {str(c): float(np.mean(probs.argmax(axis=1) == k)) for k, c in enumerate(names)}
    return out


def typed_end_to_end(detector_name: str, clf_path: Path, samples, threads: int) -> dict | None:
    from nucleikit.errors import WeightsError
    from nucleikit.infer.classify import Classifier, PatchInferenceConfig
    from nucleikit.infer.pipelines import analyze_image
    from nucleikit.infer.predict import Detector, InferenceConfig
    from nucleikit.metrics import evaluate_typed_points

    try:
        detector = Detector.from_weights(detector_name, config=InferenceConfig(threads=threads))
    except WeightsError as exc:
        print(f"typed end to end skipped: {exc}")
        return None
    clf = Classifier.from_weights(clf_path, config=PatchInferenceConfig(threads=threads))
    preds_xy, preds_cls = [], []
    t0 = time.perf_counter()
    for s in samples:
        typed = analyze_image(s.load_image(), detector, clf, mpp=s.mpp)
        preds_xy.append(typed.xy)
        preds_cls.append(typed.labels)
    seconds = time.perf_counter() - t0
    truths_xy = [s.points for s in samples]
    truths_cls = [s.classes for s in samples]
    out = {"detector": detector.name, "seconds": seconds}
    for r in (6.0, 8.0):
        out[f"r{r:g}"] = evaluate_typed_points(preds_xy, preds_cls, truths_xy, truths_cls, r, clf.classes)
    return out


# --------------------------------------------------------------------------- plots


def plot_all(results: dict, fixed: dict, features: dict, classes: tuple[str, ...], stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nucleikit.metrics import binary_pr_curve, binary_roc_curve

    written = []
    models = list(results["models"])

    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6), sharey=True)
    for ax, key, title in zip(axes, ("weighted_f1", "macro_f1"), ("weighted F1", "macro F1")):
        data = [results["models"][m]["cv"][key]["values"] for m in models]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(models) + 1), models)
        for i, values in enumerate(data, start=1):
            ax.plot(np.full(len(values), i), values, "k.", alpha=0.6)
        ax.set_title(f"{title} over folds (test)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    written.append(RESULTS / f"{stem}_f1_folds.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    for kind in ("roc", "pr"):
        fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
        for ax, m in zip(axes[0], models):
            if m not in fixed:
                continue
            probs, truth = fixed[m]
            for k, c in enumerate(classes):
                pos = truth == k
                if kind == "roc":
                    x, y = binary_roc_curve(probs[:, k], pos)
                    auc = results["models"][m]["fixed"]["per_class"][c]["roc_auc"]
                    ax.plot(x, y, label=f"{c} (AUC {auc:.3f})" if auc is not None else c)
                else:
                    x, y = binary_pr_curve(probs[:, k], pos)
                    ap = results["models"][m]["fixed"]["per_class"][c]["average_precision"]
                    ax.plot(x, y, label=f"{c} (AP {ap:.3f})" if ap is not None else c)
            if kind == "roc":
                ax.plot([0, 1], [0, 1], "k:", lw=0.8)
                ax.set_xlabel("false positive rate")
                ax.set_ylabel("true positive rate")
            else:
                ax.set_xlabel("recall")
                ax.set_ylabel("precision")
            ax.set_title(f"{m}, fixed split test")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(RESULTS / f"{stem}_{kind}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    fig, axes = plt.subplots(1, len(models), figsize=(4.4 * len(models), 4), squeeze=False)
    for ax, m in zip(axes[0], models):
        if "fixed" not in results["models"][m]:
            continue
        cm = np.asarray(results["models"][m]["fixed"]["confusion_matrix"], dtype=np.float64)
        rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{int(cm[i, j])}\n{rows[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("truth")
        ax.set_title(f"{m}, fixed split test")
    fig.tight_layout()
    written.append(RESULTS / f"{stem}_confusion.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    if features:
        try:
            import umap
        except ImportError:
            print("umap-learn is not installed (pip install 'nucleikit[umap]'): UMAP plot skipped")
        else:
            from nucleikit.export import class_colors

            fig, axes = plt.subplots(1, len(features), figsize=(4.4 * len(features), 4.2), squeeze=False)
            for ax, (m, (feats, truth)) in zip(axes[0], features.items()):
                emb = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=0).fit_transform(feats)
                colours = class_colors([classes[k] for k in truth]) / 255.0
                ax.scatter(emb[:, 0], emb[:, 1], s=2, c=colours, alpha=0.6, linewidths=0)
                for c, rgb in zip(classes, class_colors(list(classes)) / 255.0):
                    ax.plot([], [], "o", color=rgb, label=c)
                ax.set_title(f"{m}: bottleneck features (UMAP)")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.legend(fontsize=8, markerscale=1.5)
            fig.tight_layout()
            written.append(RESULTS / f"{stem}_umap.png")
            fig.savefig(written[-1], dpi=120)
            plt.close(fig)
    return written


# --------------------------------------------------------------------------- the paper's protocol


def patch_protocol(args, config) -> None:
    """Alom et al.'s protocol: each model's patch-split weights scored on the patch-level test patches."""
    from nucleikit.infer.classify import Classifier
    from nucleikit.metrics import classification_report
    from nucleikit.train.patches import PATCH_SPLIT_FRACTIONS, PATCH_SPLIT_SEED, crchisto_patch_split

    root = shared_data() / "crchisto"
    label = ("Alom et al.'s protocol: patch-level random split of all classified patches, "
             f"{'/'.join(str(round(100 * f)) for f in PATCH_SPLIT_FRACTIONS)} per class, seed {PATCH_SPLIT_SEED} "
             "(patches of one image on both sides); NOT the headline, which is the image-level split")
    results: dict = {"machine": machine(), "protocol": "patch", "label": label, "weights_dir": str(args.weights_dir),
                     "limit_images": args.limit_images, "models": {}}
    for m in args.models:
        path = args.weights_dir / m / "patch" / "best.safetensors"
        if not path.is_file():
            print(f"{m}: no patch-protocol weights at {path}")
            continue
        clf = Classifier.from_weights(path, config=config)
        meta = clf.meta
        if meta.get("protocol") != "patch" or meta.get("split_seed") != PATCH_SPLIT_SEED or \
                meta.get("split_fractions") != list(PATCH_SPLIT_FRACTIONS):
            raise SystemExit(f"{path} was not trained on this patch-level split (protocol {meta.get('protocol')!r}, "
                             f"seed {meta.get('split_seed')!r}, fractions {meta.get('split_fractions')!r})")
        limit = meta.get("limit_images") or args.limit_images
        parts, split = crchisto_patch_split(root, classes=clf.classes, patch=clf.patch, mpp=clf.mpp,
                                            limit_images=limit)
        if split["split_patches"] != meta.get("split_patches"):
            raise SystemExit(f"{path} was trained on {meta.get('split_patches')} patches, the split now has "
                             f"{split['split_patches']}: the data changed")
        test = parts["test"]
        probs = clf.predict_patches(test.patches)
        names = np.asarray(clf.classes)
        report = classification_report(names[test.labels], names[probs.argmax(axis=1)], probs, clf.classes)
        report.update({"weights": str(path), "epoch": meta.get("epoch"), "tta": clf.tta, "split": split,
                       "train_config": meta.get("train_config")})
        results["models"][m] = report
        print(f"{m} (patch protocol): accuracy {report['accuracy']:.4f}  weighted F1 {report['weighted_f1']:.4f}  "
              f"macro F1 {report['macro_f1']:.4f}  ({report['n']} test patches)")
    if not results["models"]:
        raise SystemExit(f"no patch-protocol weights under {args.weights_dir} (<model>/patch/best.safetensors)")
    stem = "classification_patch" if args.limit_images is None and not any(
        r["split"]["split_images"] < 100 for r in results["models"].values()) else "classification_patch_smoke"
    out = save(stem, results)
    print(f"\n{label}\n")
    print("| classifier (paper's protocol) | test patches | accuracy | weighted F1 | macro F1 | as reported by Alom et al. |")
    print("|---|---:|---:|---:|---:|---:|")
    reported = {"dcrn": "0.811", "densenet": "0.794"}
    for m, r in results["models"].items():
        print(f"| {m} | {r['n']} | {r['accuracy']:.3f} | {r['weighted_f1']:.3f} | {r['macro_f1']:.3f} | "
              f"{reported.get(m, 'n/a')} |")
    print(f"\nwrote {out}")


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights-dir", required=True, type=Path, help="RUNS of train_classifiers.sh")
    ap.add_argument("--models", nargs="+", default=["densenet", "dcrn"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256, help="patches per forward pass")
    ap.add_argument("--repeat", type=int, default=2, help="timed passes (best is kept)")
    ap.add_argument("--speed-patches", type=int, default=1500, metavar="N",
                    help="time the first test images holding at least N patches (0: all of them)")
    ap.add_argument("--detector", default="micronet", help="detector for the typed end-to-end figures")
    ap.add_argument("--fixed-weights", choices=["cv", "bundled"], default="cv",
                    help="weights of the fixed-split studies (plots, speed, stain shift, typed end to end): fold 4 "
                         "of --weights-dir (cv) or the bundled weights of each model (bundled)")
    ap.add_argument("--limit-images", type=int, default=None, metavar="N", help="smoke test: first N test images")
    ap.add_argument("--protocol", choices=["image", "patch"], default="image",
                    help="image: PROTOCOL.md's image-level split (default, the headline); patch: Alom et al.'s "
                         "patch-level random split (RUNS/<model>/patch), reported beside it")
    ap.add_argument("--tta", type=int, choices=(1, 2, 4, 8), default=None,
                    help="test-time augmentation views (default: each weights file's own)")
    args = ap.parse_args()

    import torch

    from nucleikit.infer.classify import PatchInferenceConfig
    from nucleikit.io.datasets.crchisto import read_split

    torch.set_num_threads(args.threads)
    if args.protocol == "patch":
        patch_protocol(args, PatchInferenceConfig(batch_size=args.batch_size, threads=args.threads, tta=args.tta))
        return
    root = shared_data() / "crchisto"
    splits = root.resolve().parent.parent / "splits" / "crchisto.json"
    # The fixed-split figures come from fold 4's run: check that they are the same split.
    assert read_split(splits, "fixed") == read_split(splits, FIXED_FOLD), "fixed split is no longer fold 4"

    results: dict = {
        "machine": machine(),
        "weights_dir": str(args.weights_dir),
        "fixed_weights": args.fixed_weights,
        "limit_images": args.limit_images,
        "protocol": args.limit_images is None,
        "models": {},
    }
    fixed_probs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    classes: tuple[str, ...] = ()
    for m in args.models:
        found = fold_weights(args.weights_dir, m)
        missing = [k for k in FOLDS if k not in found]
        if missing:
            print(f"{m}: no weights for fold(s) {', '.join(map(str, missing))} under {args.weights_dir / m}")
        if not found:
            continue
        entry: dict = {"folds": {}, "missing_folds": missing}
        config = PatchInferenceConfig(batch_size=args.batch_size, threads=args.threads, tta=args.tta)
        fixed_run = None
        for k, path in found.items():
            run = evaluate_fold(path, root, k, config, args.limit_images)
            classes = run[0].classes
            entry["folds"][str(k)] = run[-1]
            print(f"{m} fold {k}: accuracy {run[-1]['accuracy']:.4f}  weighted F1 {run[-1]['weighted_f1']:.4f}"
                  f"  macro F1 {run[-1]['macro_f1']:.4f}  ({run[-1]['n']} patches)")
            if k == FIXED_FOLD:
                fixed_run = run
        if args.fixed_weights == "bundled":
            from nucleikit.models.weights import resolve_weights

            fixed_run = evaluate_fold(resolve_weights(m), root, FIXED_FOLD, config, args.limit_images)
        if fixed_run is not None:
            clf, samples, ps, probs, report = fixed_run
            path = Path(report["weights"])
            entry["fixed"] = {**report, "source": args.fixed_weights}
            print(f"{m} fixed split ({args.fixed_weights} weights {path}): weighted F1 {report['weighted_f1']:.4f}")
            fixed_probs[m] = (probs, ps.labels)
            features[m] = (clf.patch_features(ps.patches), ps.labels)
            timed, timed_patches = speed_subset(samples, ps, args.speed_patches)
            entry["speed"] = measure_speed(path, timed, timed_patches, args.threads, args.batch_size, args.repeat)
            stain = stain_shift_study(clf, ps)
            if stain is not None:
                entry["stain_shift"] = stain
            typed = typed_end_to_end(args.detector, path, samples, args.threads)
            if typed is not None:
                entry["typed_end_to_end"] = typed
        folds = entry["folds"].values()
        entry["cv"] = {
            key: summary([f[key] for f in folds])
            for key in ("accuracy", "weighted_f1", "macro_f1", "macro_roc_auc", "macro_average_precision")
        }
        entry["cv"]["per_class_f1"] = {
            c: summary([f["per_class"][c]["f1"] for f in folds]) for c in classes
        }
        results["models"][m] = entry
    if not results["models"]:
        raise SystemExit(f"no weights found under {args.weights_dir} (<model>/fold<k>/best.safetensors)")

    stem = "classification" if args.limit_images is None else "classification_smoke"
    path = save(stem, results)
    plots = plot_all(results, fixed_probs, features, classes, stem)

    def pm(s: dict) -> str:
        if s["mean"] is None:
            return "n/a"
        return f"{s['mean']:.3f} ± {s['std']:.3f}" if s["std"] is not None else f"{s['mean']:.3f}"

    def num(v) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    print()
    print("| model | fixed-split accuracy | weighted F1 | macro F1 | macro AUC "
          "| 5-fold weighted F1 (mean ± std) | folds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m, e in results["models"].items():
        f = e.get("fixed")
        cells = (f"{f['accuracy']:.3f} | **{f['weighted_f1']:.3f}** | {f['macro_f1']:.3f} | "
                 f"{num(f['macro_roc_auc'])}" if f else "n/a | n/a | n/a | n/a")
        print(f"| {m} | {cells} | {pm(e['cv']['weighted_f1'])} | {e['cv']['weighted_f1']['folds']} |")
    print()
    print("| model | folds | accuracy | weighted F1 | macro F1 | macro ROC AUC | weighted F1 of folds 0-4 |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for m, e in results["models"].items():
        cv = e["cv"]
        per_fold = " / ".join(f"{e['folds'][str(k)]['weighted_f1']:.3f}" if str(k) in e["folds"] else "-"
                              for k in FOLDS)
        print(f"| {m} | {cv['weighted_f1']['folds']} | {pm(cv['accuracy'])} | {pm(cv['weighted_f1'])} | "
              f"{pm(cv['macro_f1'])} | {pm(cv['macro_roc_auc'])} | {per_fold} |")
    speed = {m: e["speed"] for m, e in results["models"].items() if "speed" in e}
    if speed:
        print()
        print("| model | reference fp32 patches/s | predict fp32 (ratio) | predict bf16 (ratio) "
              "| per image fp32 (ratio) |")
        print("|---|---:|---:|---:|---:|")
        for m, r in speed.items():
            print(f"| {m} | {r['reference_patches_per_s']:.0f} | {r['predict_fp32_patches_per_s']:.0f} "
                  f"({r['predict_fp32_ratio']:.2f}x) | {r['predict_bf16_patches_per_s']:.0f} "
                  f"({r['predict_bf16_ratio']:.2f}x) | {r['classify_images_fp32_patches_per_s']:.0f} "
                  f"({r['classify_images_fp32_ratio']:.2f}x) |")
    typed = {m: e["typed_end_to_end"] for m, e in results["models"].items() if "typed_end_to_end" in e}
    if typed:
        print()
        print("| detector + classifier | F_d (r = 6 px) | weighted F1_c | type accuracy | "
              + " | ".join(f"F1 {c}" for c in classes) + " |")
        print("|---|---:|---:|---:|" + "---:|" * len(classes))
        for m, t in typed.items():
            r6 = t["r6"]
            cells = [num(r6["f_d"]), num(r6["weighted_f1_c"]), num(r6["type_accuracy"])]
            cells += [num(r6["per_class"][c]["f1"]) for c in classes]
            print(f"| {t['detector']} + {m} | " + " | ".join(cells) + " |")
    stain = {m: e["stain_shift"] for m, e in results["models"].items() if "stain_shift" in e}
    if stain:
        print()
        print("| classifier | test patches | + stain normalisation | re-stained | re-stained + normalisation |")
        print("|---|---:|---:|---:|---:|")
        for m, st in stain.items():
            cells = [f"{st[k]['weighted_f1']:.3f}" for k in ("original", "original_normalised", "shifted",
                                                              "shifted_normalised")]
            print(f"| {m} | " + " | ".join(cells) + " |")
    print(f"\nwrote {path}")
    for p in plots:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
