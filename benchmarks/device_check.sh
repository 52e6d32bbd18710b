#!/usr/bin/env bash
# One prepared run on a lent GPU machine (see the device tool): checks the CUDA path of `bench run` and
# times the issue's MNIST grid. Expects wheels the machine lacks in .whl/ and MNIST in .devdata/mnist/.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/pkg . || exit 1
export PYTHONPATH=/tmp/pkg:/tmp/site PATH=/tmp/pkg/bin:$PATH
REPO=$PWD; cd /tmp  # import the installed package, not the checkout's folders
python3 -c "import torch, bench.runner as r; print('torch', torch.__version__, 'auto ->', r.describe_device(r.resolve_device('auto')))"
grid="--datasets mnist --data-dir $REPO/.devdata --methods imbalanced,smote,adasyn --ratios 0.1,0.02 --seeds 2 --quiet"
SECONDS=0
bench run $grid --results /tmp/r1 || exit 1
echo "grid wall seconds: $SECONDS"
# Determinism on the GPU: the same cell twice in fresh stores gives the same numbers.
one="--datasets mnist --data-dir $REPO/.devdata --methods imbalanced --pairs 3:5 --ratios 0.02 --seeds 1 --quiet"
bench run $one --results /tmp/d1 >/dev/null && bench run $one --results /tmp/d2 >/dev/null
python3 - <<'PY'
from bench.store import Store
a, b = (Store(p, create=False).cells().iloc[0] for p in ("/tmp/d1", "/tmp/d2"))
print("device:", a["device"], "| same metrics on rerun:", a["metrics"] == b["metrics"], "| g_mean", a["metrics"]["g_mean"])
c = Store("/tmp/r1", create=False).cells()
print(c.groupby("method")["duration_s"].describe()[["count", "mean", "max"]].to_string())
PY
bench report --results /tmp/r1 --out /tmp/rep >/dev/null
cp /tmp/r1/bench.sqlite "$OUT/gpu_bench.sqlite"; cp /tmp/rep/table3.md "$OUT/gpu_table3.md"
