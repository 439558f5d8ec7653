#!/usr/bin/env bash
# AD^eps and DPT on Dark Room over split seeds, each with ad-run (collect -> train -> evaluate on
# test tasks -> REPORT.md and timings.json): AD^eps with its ED control on its noise-distilled
# histories, DPT on the same histories (its ED control would be AD^eps's, so it is not retrained).
#
#   scripts/methods_grid.sh [OUT_DIR]      then   python scripts/compare_methods.py OUT_DIR ...
#
# Environment: SPLITS (default "0 1 2"), SEED (training seed, 0), PY (python3), WORKERS (2),
# EXTRA (more --set arguments for every run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-methods_grid}; SPLITS=${SPLITS:-0 1 2}; SEED=${SEED:-0}; PY=${PY:-python3}
WORKERS=${WORKERS:-2}; EXTRA=${EXTRA:-}
mkdir -p "$OUT/logs" && cd "$OUT"
for S in $SPLITS; do
  common=(--set env.split_seed=$S --set train.seed=$SEED --workers $WORKERS --no-progress $EXTRA)
  $PY -m ad.cli run "$ROOT/configs/darkroom_adeps.yaml" --set name=darkroom_adeps-s$S \
    --set train.run_dir=runs/adeps-s${S}t$SEED "${common[@]}" > logs/adeps_s$S.log 2>&1
  $PY -m ad.cli run "$ROOT/configs/darkroom_dpt.yaml" --set name=darkroom_dpt-s$S \
    --set collect.output_dir=learning_histories/darkroom_adeps-s$S \
    --set train.run_dir=runs/dpt-s${S}t$SEED --no-ed "${common[@]}" > logs/dpt_s$S.log 2>&1
done
