#!/usr/bin/env bash
# AD^eps and DPT on one family over split seeds, each with ad-run (collect -> train -> evaluate on
# test tasks -> REPORT.md and timings.json): AD^eps with its ED control on its noise-distilled
# histories, DPT on its own random-action histories (an ED control on those would be random).
#
#   FAMILY=darkroom scripts/methods_grid.sh [OUT_DIR]      then   python scripts/compare_methods.py OUT_DIR ...
#
# Reads configs/${FAMILY}_adeps.yaml and configs/${FAMILY}_dpt.yaml.
# Environment: FAMILY (darkroom), SPLITS (default "0 1 2"), SEED (training seed, 0), PY (python3), WORKERS (2),
# EXTRA (more --set arguments for every run), METHODS ("adeps dpt"), DPT_DATA ("own"; "adeps":
# DPT trains on the AD^eps run's histories of the same split, which must run first).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-methods_grid}; SPLITS=${SPLITS:-0 1 2}; SEED=${SEED:-0}; PY=${PY:-python3}
WORKERS=${WORKERS:-2}; EXTRA=${EXTRA:-}; FAMILY=${FAMILY:-darkroom}
mkdir -p "$OUT/logs" && cd "$OUT"
METHODS=" ${METHODS:-adeps dpt} "
for S in $SPLITS; do
  common=(--set env.split_seed=$S --set train.seed=$SEED --workers $WORKERS --no-progress $EXTRA)
  if [[ $METHODS == *" adeps "* ]]; then
    $PY -m ad.cli run "$ROOT/configs/${FAMILY}_adeps.yaml" --set name=${FAMILY}_adeps-s$S \
      --set train.run_dir=runs/adeps-s${S}t$SEED "${common[@]}" > logs/adeps_s$S.log 2>&1
  fi
  if [[ $METHODS == *" dpt "* ]]; then
    data=(); [[ ${DPT_DATA:-own} == adeps ]] && data=(--set collect.output_dir=learning_histories/${FAMILY}_adeps-s$S)
    $PY -m ad.cli run "$ROOT/configs/${FAMILY}_dpt.yaml" --set name=${FAMILY}_dpt-s$S \
      --set train.run_dir=runs/dpt-s${S}t$SEED --no-ed "${data[@]}" "${common[@]}" > logs/dpt_s$S.log 2>&1
  fi
done
