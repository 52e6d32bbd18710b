"""``bench`` with the fault suite's instruments (run as ``python instrumented_bench.py run ...``).

The product runs unchanged; the only patch wraps ``Store.add`` to
* append each stored cell (key, status, metrics) to ``$FAULT_JOURNAL`` once ``add`` has returned, fsynced:
  the cells this run has reported done, which the store must keep whatever happens next;
* with ``FAULT_KILL_WRITE=N:WHERE[:K]``, SIGKILL this process during the N-th store write: ``insert`` after K
  SQLite VM instructions of the INSERT, ``commit`` as the COMMIT starts, ``after`` once the commit returned
  but before the journal line (a stored cell the run never reported).
"""

import json
import os
import signal
import sys

from bench.cli import main
from bench.store import Store

_add = Store.add
_writes = 0


def _die(*_args):
    os.kill(os.getpid(), signal.SIGKILL)


def add(self, row):
    global _writes
    _writes += 1
    n, where, k = (os.environ.get("FAULT_KILL_WRITE", "0:none:0").split(":") + ["1"])[:3]
    kill_here = _writes == int(n)
    if kill_here and where == "insert":
        self._conn.set_progress_handler(_die, int(k))
    elif kill_here and where == "commit":
        self._conn.set_trace_callback(lambda sql: _die() if sql.strip().upper().startswith("COMMIT") else None)
    _add(self, row)
    if kill_here:
        _die()
    journal = os.environ.get("FAULT_JOURNAL")
    if journal:
        with open(journal, "a") as out:
            out.write(json.dumps({"key": row["key"], "status": row["status"], "metrics": row["metrics"]},
                                 sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())


Store.add = add

if __name__ == "__main__":
    sys.argv[0] = "bench"
    main(sys.argv[1:])
