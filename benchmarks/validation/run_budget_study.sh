#!/usr/bin/env bash
# Issue 29, part 2: the budget study (budget-study.toml) at E = 1, 3 and 10, one store per E (RESULTS/eE); resumable (a
# second call runs only the cells not done yet). Usage, from the repository root:
#   bash benchmarks/validation/run_budget_study.sh DATA [RESULTS] [EPOCHS...]
# DATA holds mnist/ (the IDX files); RESULTS defaults to benchmarks/validation/budget-study. One thread per
# run, so every sitting of the study has the same device kind (the store is filled over several sittings).
set -euo pipefail
data=${1:?usage: run_budget_study.sh DATA [RESULTS] [EPOCHS...]}
results=${2:-benchmarks/validation/budget-study}
shift $(( $# < 2 ? $# : 2 ))
epochs=("$@")
[ ${#epochs[@]} -gt 0 ] || epochs=(1 3 10)
for e in "${epochs[@]}"; do
    ${BENCH:-bench} run --preset benchmarks/validation/budget-study.toml --data-dir "$data" --results "$results/e$e" \
        --epochs "$e" --threads 1 --quiet
done
# the committed stores are single files: fold the write-ahead log back in (bench run leaves the store in WAL mode)
python3 -c "import sqlite3, sys; [sqlite3.connect(p).execute('PRAGMA journal_mode=DELETE') for p in sys.argv[1:]]" \
    "$results"/e*/bench.sqlite
