#!/usr/bin/env bash
# Train the nucleus classifiers that benchmarks/classification.py evaluates:
# DenseNet and DCRN on each of the five CRCHisto folds (PROTOCOL.md section 1;
# the fixed split is fold 4, so RUNS/<model>/fold4 is also the fixed-split run).
#
#     RUNS=runs/classify EPOCHS=30 THREADS=2 bash benchmarks/train_classifiers.sh [MODEL...]
#
# Each run writes RUNS/<model>/fold<k>/{best.safetensors,checkpoint.pt,log.jsonl};
# running the script again resumes every unfinished run from its checkpoint and
# skips none (a finished run returns at once). Ten runs of EPOCHS epochs each:
# measure one epoch first (`--epochs 1`) and size EPOCHS to the time you have.
# Then:
#
#     python benchmarks/classification.py --weights-dir "$RUNS"
set -euo pipefail

RUNS="${RUNS:-runs/classify}"
EPOCHS="${EPOCHS:-30}"
THREADS="${THREADS:-2}"
SEED="${SEED:-0}"
MODELS=("$@")
if [ ${#MODELS[@]} -eq 0 ]; then
    MODELS=(densenet dcrn)
fi

for model in "${MODELS[@]}"; do
    for fold in 0 1 2 3 4; do
        out="$RUNS/$model/fold$fold"
        echo "== $model fold $fold -> $out"
        nucleikit train classification -o "$out" \
            --dataset crchisto --fold "$fold" --model "$model" \
            --epochs "$EPOCHS" --threads "$THREADS" --seed "$SEED" --no-progress
    done
done
