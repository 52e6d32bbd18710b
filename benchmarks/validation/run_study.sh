#!/usr/bin/env bash
# Issue 29's two CPU studies, one store per E (RESULTS/eE), resumable (a second call runs only the cells not done
# yet), one thread per run so that every sitting of a study has the same device kind. From the repository root:
#   bash benchmarks/validation/run_study.sh budget-study DATA [RESULTS] [EPOCHS...]    # default E: 1 3 10
#   bash benchmarks/validation/run_study.sh capsule-study DATA [RESULTS] [EPOCHS...]   # default E: 5 20
# The preset is benchmarks/validation/STUDY.toml; DATA holds mnist/ (the IDX files); RESULTS defaults to
# benchmarks/validation/STUDY (the committed stores). BENCH names the bench command (default: bench).
set -euo pipefail
study=${1:?usage: run_study.sh budget-study|capsule-study DATA [RESULTS] [EPOCHS...]}
data=${2:?usage: run_study.sh budget-study|capsule-study DATA [RESULTS] [EPOCHS...]}
case "$study" in
    budget-study) defaults=(1 3 10) ;;
    capsule-study) defaults=(5 20) ;;
    *) echo "Error: unknown study '$study'; give budget-study or capsule-study" >&2; exit 2 ;;
esac
results=${3:-benchmarks/validation/$study}
shift $(( $# < 3 ? $# : 3 ))
epochs=("$@")
[ ${#epochs[@]} -gt 0 ] || epochs=("${defaults[@]}")
for e in "${epochs[@]}"; do
    ${BENCH:-bench} run --preset "benchmarks/validation/$study.toml" --data-dir "$data" --results "$results/e$e" \
        --epochs "$e" --threads 1 --quiet
done
# the committed stores are single files: fold the write-ahead log back in (bench run leaves the store in WAL mode)
python3 -c "import os, sqlite3, sys; [sqlite3.connect(p).execute('PRAGMA journal_mode=DELETE') for p in sys.argv[1:]
                                     if os.path.isfile(p)]" "$results"/e*/bench.sqlite
