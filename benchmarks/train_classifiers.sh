#!/usr/bin/env bash
# Train the nucleus classifiers that benchmarks/classification.py evaluates:
# DenseNet and DCRN on each of the five CRCHisto folds (PROTOCOL.md section 1),
# with the recipe of configs/<model>_crchisto.json (the one the shipped weights
# were trained with). The fixed split is fold 4, so RUNS/<model>/fold4 is also
# the fixed-split run; it goes first, then folds 0-3, both models per fold, so
# a queue cut short still holds complete folds.
#
#     RUNS=runs/classify THREADS=2 bash benchmarks/train_classifiers.sh [MODEL...]
#
# EPOCHS overrides the config's epoch count. Each run writes
# RUNS/<model>/fold<k>/{best.safetensors,checkpoint.pt,log.jsonl}; running the
# script again resumes every unfinished run from its checkpoint (a finished
# run returns at once). On 2 cores an epoch takes about 2 min (DenseNet) and
# 3 min (DCRN). Then:
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
extra=()
if [ -n "${EPOCHS:-}" ]; then
    extra=(--epochs "$EPOCHS")
fi

for fold in 4 0 1 2 3; do
    for model in "${MODELS[@]}"; do
        out="$RUNS/$model/fold$fold"
        echo "== $model fold $fold -> $out"
        nucleikit train classification -o "$out" \
            --config "$here/configs/${model}_crchisto.json" \
            --dataset crchisto --fold "$fold" --model "$model" \
            --threads "$THREADS" --seed "$SEED" --no-progress "${extra[@]}"
    done
done
