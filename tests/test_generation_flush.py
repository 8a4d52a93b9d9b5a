"""An answer is stored within the writer's interval even while the next request takes minutes
(a long local generation): it does not wait in memory for the next answer or the end of the run."""

from __future__ import annotations

import sqlite3
import threading
import time

from symkd.generation import generate
from symkd.teachers.base import LocalTeacher
from symkd.teachers.messages import Completion, Request, Response


class SlowSecond(LocalTeacher):
    """Answers the first request at once; the second only when the test lets it go."""

    backend = "slow-second"

    def __init__(self, release: threading.Event) -> None:
        super().__init__("m", batch_size=1)
        self.release = release

    def generate_batch(self, batch):
        if batch[0].id == "long":
            self.release.wait(30)
        return [Response(completions=[Completion(text=r.id)]) for r in batch]


def _stored(db) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("select count(*) from responses where status = 'ok'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_the_first_answer_is_stored_while_the_second_is_still_running(tmp_path):
    db, release = tmp_path / "r.db", threading.Event()
    requests = [Request(id="short", prompt="a"), Request(id="long", prompt="b")]
    run = threading.Thread(target=generate, args=(SlowSecond(release), requests, db), kwargs={"progress": False})
    run.start()
    try:
        deadline = time.monotonic() + 10
        while _stored(db) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = _stored(db)
    finally:
        release.set()
        run.join(30)
    assert seen == 1, "the first answer was not stored while the second was running"
    assert _stored(db) == 2
