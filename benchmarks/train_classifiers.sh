#!/usr/bin/env bash
# Train the nucleus classifiers that benchmarks/classification.py evaluates:
# DenseNet and DCRN on each of the five CRCHisto folds (PROTOCOL.md section 1).
# CONFIG (default configs/crchisto_classify_cv.json) is the recipe of every run:
# the default is the cross-validation budget that fits one session on 2 cores
# without AMX (1 epoch, cosine learning rate from 0.01, H&E stain jitter, fp32);
# CONFIG=configs/{model}_crchisto.json (the literal "{model}" is replaced)
# trains the shipped weights' recipe instead. The fixed split is fold 4, so
# RUNS/<model>/fold4 is also the fixed-split run; it goes first, then folds 0-3,
# both models per fold, so a queue cut short still holds complete folds.
#
#     RUNS=runs/classify THREADS=2 bash benchmarks/train_classifiers.sh [MODEL...]
#
# PROTOCOL=patch trains Alom et al.'s protocol instead (beside the headline,
# never as it): one run per model on the patch-level random split of all
# classified patches (70/10/20 per class, seed 0), into RUNS/<model>/patch;
# then `python benchmarks/classification.py --weights-dir "$RUNS" --protocol patch`.
#
# EPOCHS overrides the config's epoch count. Each run writes
# RUNS/<model>/fold<k>/{best.safetensors,checkpoint.pt,log.jsonl}; running the
# script again resumes every unfinished run from its checkpoint (a finished
# run returns at once). An epoch takes about 2 min (DenseNet) and 3 min (DCRN)
# on 2 cores with AMX and bf16 autocast, 5-6 and 8-9 min in fp32 without AMX
# (measure one first). Then:
#
#     python benchmarks/classification.py --weights-dir "$RUNS"
set -euo pipefail

RUNS="${RUNS:-runs/classify}"
THREADS="${THREADS:-2}"
SEED="${SEED:-0}"
MODELS=("$@")
if [ ${#MODELS[@]} -eq 0 ]; then
    MODELS=(densenet dcrn)
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
CONFIG="${CONFIG:-$here/configs/crchisto_classify_cv.json}"
extra=()
if [ -n "${EPOCHS:-}" ]; then
    extra=(--epochs "$EPOCHS")
fi

if [ "${PROTOCOL:-image}" = "patch" ]; then
    for model in "${MODELS[@]}"; do
        out="$RUNS/$model/patch"
        echo "== $model patch-level protocol -> $out"
        nucleikit train classification -o "$out" \
            --config "${CONFIG//\{model\}/$model}" \
            --dataset crchisto --protocol patch --model "$model" \
            --threads "$THREADS" --seed "$SEED" --no-progress "${extra[@]}"
    done
    exit 0
fi

for fold in 4 0 1 2 3; do
    for model in "${MODELS[@]}"; do
        out="$RUNS/$model/fold$fold"
        echo "== $model fold $fold -> $out"
        nucleikit train classification -o "$out" \
            --config "${CONFIG//\{model\}/$model}" \
            --dataset crchisto --fold "$fold" --model "$model" \
            --threads "$THREADS" --seed "$SEED" --no-progress "${extra[@]}"
    done
done
