#!/usr/bin/env bash
# One prepared run on a lent GPU machine (see the device tool): the CapsAN step benchmark (with a check that
# the training step never synchronises with the host) and the CUDA path of `bench run` on MNIST.
# Expects wheels the machine lacks in .whl/ and MNIST in .devdata/mnist/ (both git-ignored, carried).
# Usage: bash benchmarks/device_check.sh [all|fused|bench|grid|speed|baselines|quality|scale|budget|lt|validate|studies]
#   all: what the open issues need measured on a GPU: fused (issue 30)
#   fused: issue 30's figures, each step cut so that the whole fits one call (about 8 minutes): the solo step
#          profile (benchmarks/profile_step.py, MNIST, 1 epoch) cut at PROFILE_TIMEOUT (90 s); benchmarks/fused.py
#          on MNIST, solo against fused at S = 1 and 10: the common classifier (imbalanced, smote; eager, then
#          --compile reduce-overhead) and the generator phases (gan, dagan, bagan-gp, gamo, capsan; 1 epoch), cut at
#          FUSED_BENCH_TIMEOUT (150 s); then the whole MNIST paper-table3 grid (every method, 2,100 cells,
#          --fuse auto) cut at FUSED_TIMEOUT (default 240 s): its cells done, their wall time, the dry-run
#          estimate of the rest and Table 3 so far ($OUT/gpu_fused_table3.md, .sqlite)
#   bench: the step benchmark only; grid: the step benchmark, then imbalanced / capsan / capsan-conv on MNIST; speed: the CapsAN step eager vs --compile reduce-overhead and default
#   (fp32, and bf16 with SPEED_BF16=1; batch 64 and 256; issue 8's 2.5x target is batch 64 on an H100); baselines: the issue-4 grid (gan, acgan, dagan, gamo, bagan, crl on MNIST);
#   quality: paper-table1 (one seed, one epoch) and capsan + gan with --metrics fid,ssim on one MNIST pair
#   scale: issue 8's figures: per-method img/s and peak memory at batch 64/256, packed throughput K = 1, 2, 4, 8
#          (benchmarks/throughput.py), the paper-table3 dry-run estimate on this GPU, and a --jobs-per-gpu 4 run
#   budget: issue 16's figures: the paper-table3 MNIST cell (3:5, ratio 0.1, one seed) of every method under the
#           budget contract, then budget.md (updates per role, fit seconds on this GPU) and the G-means
#   lt: issue 21's figure: the cifar10-lt recipe (ResNet-32, longtail-sgd) on MNIST-LT (the carried data; CIFAR-10
#           is too big to carry): imbalanced and ldam-drw at factor 100, 5 epochs, one seed, their seconds per cell
#           and the preset's dry-run estimate on this GPU, cut at LT_TIMEOUT seconds (default 150)
#   validate: issue 18's GPU row: `--preset validate-gamo-gpu --datasets mnist` (both test sets, 3 seeds, E = 10),
#           cut at GRID_TIMEOUT seconds (default 420) so that validation.md of the finished cells still comes back
#           ($OUT/gpu_validation.md, .sqlite); VALIDATION.md's GPU rows are that file's tables
#   studies: issue 29's budget study beyond the CPU's reach: benchmarks/validation/budget-study.toml (MNIST, gamo
#           protocol, imbalanced test; smote, bagan, gamo, deepsmote) at E = STUDY_EPOCHS (default 30), cut at
#           GRID_TIMEOUT (default 420); the store ($OUT/gpu_budget_study.sqlite) and its validation.md come back.
#           A GPU is another device kind: VALIDATION.md shows such rows apart from the CPU's E = 1, 3, 10
set -uo pipefail
MODE=${1:-all}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/pkg . || exit 1
export PYTHONPATH=/tmp/pkg:/tmp/site PATH=/tmp/pkg/bin:$PATH PYTHONUNBUFFERED=1
REPO=$PWD; cd /tmp  # import the installed package, not the checkout's folders
if [ "$MODE" = fused ] || [ "$MODE" = all ]; then
  timeout "${PROFILE_TIMEOUT:-90}" python3 "$REPO/benchmarks/profile_step.py" --device cuda --dataset mnist \
    --data-dir "$REPO/.devdata" --epochs 1 --methods imbalanced,gan,dagan,gamo,capsan 2>&1 | grep -v "^USDT\|^ERROR\|^\[W"
  timeout 60 python3 "$REPO/benchmarks/fused.py" --device cuda --dataset mnist --data-dir "$REPO/.devdata" \
    --methods imbalanced,smote --sizes 1,10 --epochs 2
  timeout 60 python3 "$REPO/benchmarks/fused.py" --device cuda --dataset mnist --data-dir "$REPO/.devdata" \
    --methods imbalanced --sizes 1,10 --epochs 2 --compile reduce-overhead
  timeout "${FUSED_BENCH_TIMEOUT:-150}" python3 "$REPO/benchmarks/fused.py" --device cuda --dataset mnist \
    --data-dir "$REPO/.devdata" --methods gan,dagan,bagan-gp,gamo,capsan --sizes 1,10 --epochs 1
  SECONDS=0
  timeout "${FUSED_TIMEOUT:-240}" bench run --preset paper-table3 --data-dir "$REPO/.devdata" --fuse auto \
    --results /tmp/f3 --quiet | tail -1
  echo "paper-table3 MNIST, every method, --fuse auto: exit ${PIPESTATUS[0]} in ${SECONDS}s"
  python3 - <<'PY'
from bench.store import Store
c = Store("/tmp/f3", create=False).cells()
done = c[c.status == "done"]
print(f"{len(done)} of 2100 cells done, {done.duration_s.sum():.0f} cell-seconds; by method:",
      done.groupby("method").duration_s.agg(["count", "sum"]).round(1).to_dict("index"))
PY
  bench run --preset paper-table3 --data-dir "$REPO/.devdata" --results /tmp/f3 --dry-run | tail -2
  bench report --results /tmp/f3 --out /tmp/f3rep --format md --tables 3 >/dev/null
  cat /tmp/f3rep/table3.md
  cp /tmp/f3rep/table3.md "$OUT/gpu_fused_table3.md"; cp /tmp/f3/bench.sqlite "$OUT/gpu_fused_table3.sqlite"
  exit 0
fi
if [ "$MODE" = quality ]; then
  SECONDS=0
  timeout "${GRID_TIMEOUT:-240}" bench run --preset paper-table1 --datasets mnist --data-dir "$REPO/.devdata" \
    --seeds 1 --epochs 1 --results /tmp/t1 --quiet; echo "paper-table1 exit $? in ${SECONDS}s"
  SECONDS=0
  timeout "${GRID_TIMEOUT:-240}" bench run --methods capsan,gan --datasets mnist --data-dir "$REPO/.devdata" \
    --ratios 0.05 --pairs 3:5 --seeds 1 --metrics fid,ssim --results /tmp/q1 --quiet; echo "quality exit $? in ${SECONDS}s"
  python3 - <<'PY'
from bench.store import Store
for where in ("/tmp/t1", "/tmp/q1"):
    c = Store(where, create=False).cells()
    for _, r in c.iterrows():
        m = r["metrics"] or {}
        q = {k: {n: (round(v[n]["value"], 2) if "value" in v[n] else round(v[n]["generated"]["mean"], 3))
                 for n in v if n.startswith(("fid", "ssim"))} for k, v in (m.get("quality") or {}).items()}
        print(r["method"], r["ratio"], r["status"], round(r["duration_s"], 1), "acc", m.get("accuracy"), q,
              m.get("quality_error"), r["device"])
PY
  exit 0
fi
if [ "$MODE" = scale ]; then
  python3 "$REPO/benchmarks/throughput.py" --dataset mnist --data-dir "$REPO/.devdata" \
    --methods imbalanced,gan,capsan --epochs 1 --packing 1,2,4,8 --cells-per-worker 2
  SECONDS=0
  bench run --preset paper-table3 --datasets mnist --data-dir "$REPO/.devdata" --results /tmp/p3 --dry-run \
    | tail -3; echo "dry-run seconds: $SECONDS"
  SECONDS=0
  timeout "${GRID_TIMEOUT:-240}" bench run --methods imbalanced,gan --datasets mnist --data-dir "$REPO/.devdata" \
    --ratios 0.05 --seeds 2 --jobs-per-gpu 4 --results /tmp/j4 --quiet | head -1; echo "jobs-per-gpu 4: ${SECONDS}s"
  exit 0
fi
if [ "$MODE" = lt ]; then
  SECONDS=0
  timeout "${LT_TIMEOUT:-150}" bench run --preset cifar10-lt --datasets mnist --data-dir "$REPO/.devdata" \
    --methods imbalanced,ldam-drw --ratios 0.01 --seeds 1 --epochs 5 --results /tmp/lt --quiet | head -1
  echo "cifar10-lt recipe on MNIST-LT: ${SECONDS}s"
  python3 - <<'PY'
from bench.store import Store
for _, r in Store("/tmp/lt", create=False).cells().iterrows():
    m = r["metrics"] or {}
    print(r["method"], r["status"], "fit_s", (m.get("budget") or {}).get("fit_seconds"), "acc", m.get("accuracy"),
          r["device"])
PY
  bench run --preset cifar10-lt --datasets mnist --data-dir "$REPO/.devdata" --results /tmp/lt --dry-run | tail -1
  [ "$MODE" = lt ] && exit 0
fi
if [ "$MODE" = validate ]; then
  SECONDS=0
  timeout "${GRID_TIMEOUT:-420}" bench run --preset validate-gamo-gpu --datasets mnist --data-dir "$REPO/.devdata" \
    --seeds "${VALIDATE_SEEDS:-3}" --results /tmp/v1 --quiet; echo "validate-gamo-gpu exit $? in ${SECONDS}s"
  bench report --results /tmp/v1 --out /tmp/v1rep --format md --tables 3 --validation >/dev/null
  cat /tmp/v1rep/validation.md
  cp /tmp/v1rep/validation.md "$OUT/gpu_validation.md"; cp /tmp/v1/bench.sqlite "$OUT/gpu_validation.sqlite"
  exit 0
fi
if [ "$MODE" = studies ]; then
  SECONDS=0
  timeout "${GRID_TIMEOUT:-420}" bench run --preset "$REPO/benchmarks/validation/budget-study.toml" \
    --data-dir "$REPO/.devdata" --epochs "${STUDY_EPOCHS:-30}" --results /tmp/s1 --quiet
  echo "budget study at E = ${STUDY_EPOCHS:-30}: exit $? in ${SECONDS}s"
  bench report --results /tmp/s1 --out /tmp/s1rep --format md --tables 3 --validation >/dev/null
  cat /tmp/s1rep/validation.md
  cp /tmp/s1rep/validation.md "$OUT/gpu_budget_study.md"; cp /tmp/s1/bench.sqlite "$OUT/gpu_budget_study.sqlite"
  exit 0
fi
if [ "$MODE" = budget ]; then
  SECONDS=0
  timeout "${GRID_TIMEOUT:-480}" bench run --preset paper-table3 --datasets mnist --data-dir "$REPO/.devdata" \
    --pairs 3:5 --ratios 0.1 --seeds 1 --results /tmp/b1 --quiet; echo "budget cell exit $? in ${SECONDS}s"
  bench report --results /tmp/b1 --out /tmp/b1rep --format md --tables 3 >/dev/null
  cat /tmp/b1rep/budget.md; grep -E "^\| (ratio|0\.1)|Unequal" /tmp/b1rep/table3.md
  cp /tmp/b1rep/budget.md "$OUT/gpu_budget.md"; cp /tmp/b1/bench.sqlite "$OUT/gpu_budget.sqlite"
  python3 - <<'PY'
from bench.store import Store
c = Store("/tmp/b1", create=False).cells()
for _, r in c.iterrows():
    m = r["metrics"] or {}
    print(r["method"], r["status"], "g_mean", m.get("g_mean"), "fit_s", (m.get("budget") or {}).get("fit_seconds"),
          "cell_s", round(r["duration_s"], 1), r["device"])
PY
  exit 0
fi
if [ "$MODE" = speed ]; then
  # fp32 first (the 2.5x target); bf16 too with SPEED_BF16=1. Each run compiles once, in its untimed warm-up.
  for precision in fp32 ${SPEED_BF16:+bf16}; do
    for mode in reduce-overhead default; do
      timeout 240 python3 "$REPO/benchmarks/capsan_step.py" --steps 100 --repeats 2 --precision $precision --compile $mode
    done
  done
  exit 0
fi
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
