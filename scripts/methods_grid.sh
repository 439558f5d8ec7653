#!/usr/bin/env bash
# AD^eps and DPT on Dark Room over split seeds, each with ad-run (collect -> train -> evaluate on
# test tasks -> REPORT.md and timings.json): AD^eps with its ED control on its noise-distilled
# histories, DPT on its own random-action histories (an ED control on those would be random).
#
#   scripts/methods_grid.sh [OUT_DIR]      then   python scripts/compare_methods.py OUT_DIR ...
#
# Environment: SPLITS (default "0 1 2"), SEED (training seed, 0), PY (python3), WORKERS (2),
# EXTRA (more --set arguments for every run), METHODS ("adeps dpt").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-methods_grid}; SPLITS=${SPLITS:-0 1 2}; SEED=${SEED:-0}; PY=${PY:-python3}
WORKERS=${WORKERS:-2}; EXTRA=${EXTRA:-}
mkdir -p "$OUT/logs" && cd "$OUT"
METHODS=" ${METHODS:-adeps dpt} "
for S in $SPLITS; do
  common=(--set env.split_seed=$S --set train.seed=$SEED --workers $WORKERS --no-progress $EXTRA)
  if [[ $METHODS == *" adeps "* ]]; then
    $PY -m ad.cli run "$ROOT/configs/darkroom_adeps.yaml" --set name=darkroom_adeps-s$S \
      --set train.run_dir=runs/adeps-s${S}t$SEED "${common[@]}" > logs/adeps_s$S.log 2>&1
  fi
  if [[ $METHODS == *" dpt "* ]]; then
    $PY -m ad.cli run "$ROOT/configs/darkroom_dpt.yaml" --set name=darkroom_dpt-s$S \
      --set train.run_dir=runs/dpt-s${S}t$SEED --no-ed "${common[@]}" > logs/dpt_s$S.log 2>&1
  fi
done
