#!/usr/bin/env bash
# One prepared run on a lent GPU machine (see the device tool): the CapsAN step benchmark (with a check that
# the training step never synchronises with the host) and the CUDA path of `bench run` on MNIST.
# Expects wheels the machine lacks in .whl/ and MNIST in .devdata/mnist/ (both git-ignored, carried).
# Usage: bash benchmarks/device_check.sh [all|bench|baselines]
#   bench: the step benchmark only; baselines: the issue-4 grid (gan, acgan, dagan, gamo, bagan, crl on MNIST)
set -uo pipefail
MODE=${1:-all}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/pkg . || exit 1
export PYTHONPATH=/tmp/pkg:/tmp/site PATH=/tmp/pkg/bin:$PATH PYTHONUNBUFFERED=1
REPO=$PWD; cd /tmp  # import the installed package, not the checkout's folders
if [ "$MODE" != baselines ]; then
  python3 "$REPO/benchmarks/capsan_step.py" --steps 100
  python3 "$REPO/benchmarks/capsan_step.py" --steps 100 --precision bf16
fi
[ "$MODE" = bench ] && exit 0
grid="--methods imbalanced,capsan,capsan-conv --datasets mnist --data-dir $REPO/.devdata --ratios 0.05 --seeds 2 --quiet"
[ "$MODE" = baselines ] && grid="--methods gan,acgan,dagan,gamo,bagan,crl --datasets mnist --data-dir $REPO/.devdata --ratios 0.05 --seeds 2 --quiet"
SECONDS=0
# Cut the grid before the device call's own limit so that the summary of the finished cells still runs.
timeout "${GRID_TIMEOUT:-480}" bench run $grid --results /tmp/r1; echo "bench run exit status: $?"
echo "grid wall seconds: $SECONDS"
python3 - <<'PY'
from bench.store import Store
c = Store("/tmp/r1", create=False).cells()
c["g_mean"] = c["metrics"].map(lambda m: m and m["g_mean"])
print(c.groupby("method")[["duration_s", "g_mean"]].agg(["mean", "min", "max"]).round(3).to_string())
print("device:", c["device"].iloc[0])
PY
bench report --results /tmp/r1 --out /tmp/rep >/dev/null
cp /tmp/r1/bench.sqlite "$OUT/gpu_bench.sqlite"; cp /tmp/rep/table3.md "$OUT/gpu_table3.md"
for m in capsan gan acgan dagan gamo bagan; do
  for f in /tmp/r1/artifacts/mnist/$m/*/samples.png; do cp "$f" "$OUT/${m}_samples.png"; break; done
done
