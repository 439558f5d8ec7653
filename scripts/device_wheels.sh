#!/usr/bin/env bash
# The wheels a lent GPU machine's image lacks (it has torch, numpy, h5py, matplotlib, pyyaml,
# tqdm, pandas, cloudpickle; no network), for its Python 3.12, into .whl/ (git-ignored): the
# device tool carries that folder, and scripts/device_run.py's usage installs from it.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any)
args=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d .whl)
for p in "${PLATFORMS[@]}"; do args+=(--platform "$p"); done
python3 -m pip download -q "${args[@]}" gymnasium==1.4.0 farama-notifications==0.0.6 \
  stable-baselines3==2.9.2 minigrid==3.2.0 pygame-ce==2.5.8
du -sh .whl
