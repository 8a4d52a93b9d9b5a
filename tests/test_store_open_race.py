"""Several processes that open one new run database at the same instant all get a usable store.

Switching a new file to WAL takes a lock SQLite does not wait for; without the retry in
``symkd.store.base`` one opener of two failed with "database is locked" about half the time
(the cause of a red CI run in test_concurrency).
"""

from __future__ import annotations

import subprocess
import sys
import time

from symkd.store.schema import MIGRATIONS

_OPEN_AT = """
import sys, time
from symkd.store import Store
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time() - 0.05))
while time.time() < start:  # the last 50 ms spinning, so both leave the line together
    pass
store = Store(sys.argv[1])
print(store.meta("schema_version"))
store.close()
"""


def test_processes_that_open_one_new_database_together_all_succeed(tmp_path):
    for round_ in range(5):
        db = tmp_path / f"r{round_}.db"
        start = time.time() + 3.0  # every process has imported symkd by then
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT, str(db), str(start)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]  # two: one per core of a CI machine
        results = [p.communicate(timeout=120) for p in procs]
        for proc, (out, err) in zip(procs, results):
            assert proc.returncode == 0, f"round {round_}: {err.strip()}"
            assert out.strip() == str(len(MIGRATIONS)), (out, err)  # migrated to the current schema
