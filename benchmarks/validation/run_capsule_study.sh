#!/usr/bin/env bash
# Issue 29, part 3: the capsule classifier's curve (capsule-study.toml) at E = 5 and 20, one store per E (RESULTS/eE);
# resumable. Usage, from the repository root:
#   bash benchmarks/validation/run_capsule_study.sh DATA [RESULTS] [EPOCHS...]
# DATA holds mnist/; RESULTS defaults to benchmarks/validation/capsule-study; one thread per run (one device
# kind over every sitting).
set -euo pipefail
data=${1:?usage: run_capsule_study.sh DATA [RESULTS] [EPOCHS...]}
results=${2:-benchmarks/validation/capsule-study}
shift $(( $# < 2 ? $# : 2 ))
epochs=("$@")
[ ${#epochs[@]} -gt 0 ] || epochs=(5 20)
for e in "${epochs[@]}"; do
    ${BENCH:-bench} run --preset benchmarks/validation/capsule-study.toml --data-dir "$data" --results "$results/e$e" \
        --epochs "$e" --threads 1 --quiet
done
# the committed stores are single files: fold the write-ahead log back in (bench run leaves the store in WAL mode)
python3 -c "import sqlite3, sys; [sqlite3.connect(p).execute('PRAGMA journal_mode=DELETE') for p in sys.argv[1:]]" \
    "$results"/e*/bench.sqlite
