#!/usr/bin/env bash
# A recipe's headline over split seeds x training seeds: collect each split once, train AD and ED
# for every (split, training seed), evaluate on test tasks, aggregate with a 95% CI over runs.
#
#   scripts/seed_grid.sh configs/darkroom_quick.yaml [OUT_DIR]
#
# Environment: SPLITS (default "0 1 2"), SEEDS ("0 1"), DEVICE (train and eval device, cpu),
# WORKERS (collection processes per split, 2), PY (python, python3), EXTRA (more --set arguments
# for collection and training; eval.* ones reach evaluation through the trained run's config),
# JOBS (how many jobs of a phase run at once; default: all). On a small machine set JOBS=1: 12
# training processes on 2 cores ran ~10x slower in all than one after another (bandit_quick).
# The headline of docs/results/darkroom.md was made with
#   DEVICE=cuda WORKERS=5 EXTRA="--set train.bf16=false" scripts/seed_grid.sh configs/darkroom_quick.yaml
# on a machine with 16 cores and one GPU.
set -euo pipefail
CFG=$(realpath "$1"); OUT=${2:-seed_grid}
SPLITS=${SPLITS:-0 1 2}; SEEDS=${SEEDS:-0 1}; DEVICE=${DEVICE:-cpu}; WORKERS=${WORKERS:-2}
PY=${PY:-python3}; EXTRA=${EXTRA:-}; JOBS=${JOBS:-0}
AD="$PY -m ad.cli"
mkdir -p "$OUT/logs" && cd "$OUT"
NAME=$($PY -c "import sys; from ad.config import load_config; print(load_config(sys.argv[1]).name)" "$CFG")
# ED's optimiser steps: train.ed.num_steps of the config with EXTRA applied (None: num_steps)
ED_STEPS=$($PY - "$CFG" $EXTRA <<'PYEOF'
import sys
from ad.config import load_config
overrides = [a for a in sys.argv[2:] if a != "--set"]
train = load_config(sys.argv[1], overrides).train
print(train.ed.num_steps or train.num_steps)
PYEOF
)
pids=()
failed=0
wait_all() { for p in "${pids[@]}"; do wait "$p" || failed=1; done; pids=(); return $failed; }
# with JOBS > 0: wait for the running jobs once JOBS of them have started
throttle() { if [ "$JOBS" -gt 0 ] && [ "${#pids[@]}" -ge "$JOBS" ]; then wait_all || true; fi; }
for S in $SPLITS; do
  $AD collect --config "$CFG" --set name=$NAME-s$S --set env.split_seed=$S --workers $WORKERS \
    --no-progress $EXTRA > logs/collect_s$S.log 2>&1 & pids+=($!); throttle
done
wait_all || { echo "collection failed: see $OUT/logs"; exit 1; }
for S in $SPLITS; do for T in $SEEDS; do
  common=(--config "$CFG" --set name=$NAME-s$S --set env.split_seed=$S --set train.seed=$T
          --set train.device=$DEVICE --no-progress $EXTRA)
  $AD train "${common[@]}" --set train.run_dir=runs/s${S}t$T > logs/train_s${S}t$T.log 2>&1 &
  pids+=($!); throttle
  $AD train "${common[@]}" --set train.run_dir=runs/s${S}t$T-ed --set train.mode=ed \
    --set train.num_steps=$ED_STEPS \
    > logs/train_s${S}t$T-ed.log 2>&1 & pids+=($!); throttle
done; done
wait_all || { echo "training failed: see $OUT/logs"; exit 1; }
for S in $SPLITS; do for T in $SEEDS; do
  $AD eval --run runs/s${S}t$T --compare runs/s${S}t$T-ed --set eval.device=$DEVICE --no-progress \
    > logs/eval_s${S}t$T.log 2>&1 & pids+=($!); throttle
done; done
wait_all || { echo "evaluation failed: see $OUT/logs"; exit 1; }
$AD eval --aggregate runs/s*t?/eval-test --out aggregate
