#!/usr/bin/env bash
# The paper's figure from one command: every family's recipe over split seeds x training seeds
# (scripts/seed_grid.sh, which collects, trains AD and ED, evaluates on test tasks and
# aggregates), then one panel per family with ad-eval --figure.
#
#   scripts/paper_figure.sh OUT_DIR configs/darkroom_quick.yaml configs/bandit_quick.yaml ...
#
# Writes OUT_DIR/<config name>/ (each family's seed grid, aggregate/ included) and
# OUT_DIR/figure.png, figure.json, and the table of README.md and docs/results/index.md in
# OUT_DIR/table.md. A family whose aggregate already exists is not run again, so a figure can
# grow one family at a time. The environment of seed_grid.sh (SPLITS, SEEDS, DEVICE, WORKERS,
# PY, EXTRA) applies to every family. KEEP=1 also keeps each aggregate in the repository
# (docs/results/families/<config name>.json) and redraws docs/families.png and the table of
# README.md and docs/results/index.md from every kept one (scripts/families_figure.py).
set -euo pipefail
OUT=$(realpath -m "$1"); shift
PY=${PY:-python3}
HERE=$(dirname "$(realpath "$0")")
mkdir -p "$OUT"
results=(); keep=()
for CFG in "$@"; do
  CFG=$(realpath "$CFG")
  NAME=$(basename "$CFG" .yaml)
  if [ ! -f "$OUT/$NAME/aggregate/aggregate.json" ]; then
    echo "$NAME: seed grid in $OUT/$NAME"
    bash "$HERE/seed_grid.sh" "$CFG" "$OUT/$NAME"
  fi
  results+=("$OUT/$NAME/aggregate"); keep+=(--keep "$NAME=$OUT/$NAME/aggregate")
done
$PY -m ad.cli eval --figure "${results[@]}" --out "$OUT" > "$OUT/figure.log"
cat "$OUT/figure.log"
grep '^|' "$OUT/figure.log" > "$OUT/table.md"
if [ "${KEEP:-0}" = 1 ]; then $PY "$HERE/families_figure.py" "${keep[@]}"; fi
