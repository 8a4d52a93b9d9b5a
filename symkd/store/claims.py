"""Leases on request keys, so concurrent runs of one job split it instead of paying twice.

Before a request is sent, the process claims its key in the ``claims`` table (one short
``BEGIN IMMEDIATE`` transaction per chunk of keys, so two processes can never both win a
key). A claim names its owner (host, pid and a token per generate call) and expires at a
time the owner's heartbeat keeps pushing forward. A key is free when nobody holds it, when
the lease has run out, or when its owner was a process on this host that no longer exists
(a ``kill -9``'d run is taken over at once, not after the lease). The answer's row and the
release of its claim are written in one transaction (:mod:`symkd.store.cache`), so another
process sees either the claim or the answer, never a gap in which it would send the key again.

Keys held by someone else are waited for: once their answer is ``ok`` they count as answered
by the other process; once released without one (it failed there, or its owner died) this
process claims and sends them itself.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from symkd.store.db import Store
from symkd.teachers.messages import Request

#: seconds a claim lasts without a heartbeat (``SYMKD_LEASE_S`` overrides; tests shorten it)
LEASE_S = float(os.environ.get("SYMKD_LEASE_S", "30"))
_CHUNK = 500


@dataclass(frozen=True)
class Owner:
    """Who holds a claim: one per generate call (two calls in one process are two owners)."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    token: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_gone(host: str | None, pid: int | None, expires_at: float | None, now: float, *, alive=None) -> bool:
    """Whether a lease (or a running run's heartbeat) no longer protects anything."""
    if expires_at is None or expires_at < now:
        return True
    if host == socket.gethostname() and pid:
        return not (alive or pid_alive)(pid)
    return False


def _chunks(keys: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]


def _classify(store: Store, owner: Owner, keys: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """(free for us, answered ok, held by a live owner elsewhere), read in the current transaction."""
    now = time.time()
    alive: dict[int, bool] = {}

    def is_alive(pid: int) -> bool:
        if pid not in alive:
            alive[pid] = pid_alive(pid)
        return alive[pid]

    free: list[str] = []
    answered: list[str] = []
    others: list[str] = []
    for chunk in _chunks(list(keys)):
        marks = ",".join("?" * len(chunk))
        ok = {r[0] for r in store.conn.execute(
            f"select key from responses where status = 'ok' and key in ({marks})", list(chunk))}  # fmt: skip
        held = {r[0]: r[1:] for r in store.conn.execute(
            f"select key, owner, host, pid, expires_at from claims where key in ({marks})", list(chunk))}  # fmt: skip
        for key in chunk:
            h = held.get(key)
            if key in ok:
                answered.append(key)
            elif h is None or h[0] == owner.name or holder_gone(h[1], h[2], h[3], now, alive=is_alive):
                free.append(key)
            else:
                others.append(key)
    return free, answered, others


def claim(store: Store, owner: Owner, run_id: str, keys: Sequence[str], lease_s: float = LEASE_S
          ) -> tuple[list[str], list[str], list[str]]:  # fmt: skip
    """Claim what is free of ``keys``: (claimed by us, already answered ok, held by others)."""
    with store.transaction():
        mine, answered, others = _classify(store, owner, keys)
        expires = time.time() + lease_s
        store.conn.executemany(
            "insert into claims (key, owner, host, pid, run_id, expires_at) values (?, ?, ?, ?, ?, ?) "
            "on conflict(key) do update set owner = excluded.owner, host = excluded.host, pid = excluded.pid, "
            "run_id = excluded.run_id, expires_at = excluded.expires_at",
            [(key, owner.name, owner.host, owner.pid, run_id, expires) for key in mine],
        )
    return mine, answered, others


def peek(store: Store, owner: Owner, keys: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """:func:`claim` without claiming: a read that takes no write lock (for polling)."""
    with store._lock:
        return _classify(store, owner, keys)


def renew(store: Store, owner: Owner, lease_s: float = LEASE_S) -> None:
    """Push every lease of ``owner`` forward (the heartbeat)."""
    with store.transaction():
        store.conn.execute("update claims set expires_at = ? where owner = ?", (time.time() + lease_s, owner.name))


def release_all(store: Store, owner: Owner) -> None:
    """Give up whatever ``owner`` still holds (claimed but never answered: an interrupted run)."""
    with store.transaction():
        store.conn.execute("delete from claims where owner = ?", (owner.name,))


class ClaimFeed:
    """Hands a teacher's workers the requests this process claimed, one chunk ahead.

    ``next()`` returns a claimed request, claims the next chunk when it has none, waits
    (polling every ``poll_s``) for keys other processes hold, and returns None when every key
    is answered, claimed and handed out, or finished elsewhere. ``on_answered`` hears of the
    keys another process answered ok meanwhile (this process then counts them as cached);
    ``before_wait`` runs before each wait (the writer's flush: two processes each waiting on
    answers the other still buffers would otherwise wait for ever).
    """

    def __init__(self, store: Store, owner: Owner, run_id: str, todo: dict[str, Request], *, chunk: int,
                 on_answered: Callable[[list[str]], None] | None = None,
                 before_wait: Callable[[], None] | None = None, lease_s: float = LEASE_S,
                 poll_s: float = 0.1):  # fmt: skip
        self.store, self.owner, self.run_id = store, owner, run_id
        self.todo = todo
        self.chunk, self.lease_s, self.poll_s = max(1, chunk), lease_s, poll_s
        self.on_answered, self.before_wait = on_answered, before_wait
        self.pending: deque[str] = deque(todo)
        self.ready: deque[str] = deque()
        self.waiting: list[str] = []
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self.todo)

    async def next(self) -> Request | None:
        while True:
            if self.ready:
                return self.todo[self.ready.popleft()]
            if not self.pending and not self.waiting:
                return None
            async with self._lock:
                if self.ready:
                    continue
                if self.pending:
                    batch = [self.pending.popleft() for _ in range(min(self.chunk, len(self.pending)))]
                    self._take(batch)
                else:
                    if self.before_wait is not None:
                        self.before_wait()  # store what we hold: the other may be waiting on it
                    await asyncio.sleep(self.poll_s)
                    self._poll()

    def next_nowait(self) -> Request | None:
        """A request that is ready or claimable now, without waiting for keys held elsewhere
        (a batching teacher fills a batch with these, never holding claimed keys while it waits)."""
        if not self.ready and self.pending:
            self._take([self.pending.popleft() for _ in range(min(self.chunk, len(self.pending)))])
        return self.todo[self.ready.popleft()] if self.ready else None

    async def drain(self) -> list[Request]:
        """Everything that can be claimed now, as one list (for teachers that want a sequence);
        waits while only keys held elsewhere are left; [] when nothing is."""
        first = await self.next()
        if first is None:
            return []
        while self.pending:
            self._take([self.pending.popleft() for _ in range(min(self.chunk, len(self.pending)))])
        out = [first, *(self.todo[k] for k in self.ready)]
        self.ready.clear()
        return out

    def _poll(self) -> None:
        """Look (without the write lock) at the keys others hold; claim only those now free."""
        free, answered, others = peek(self.store, self.owner, self.waiting)
        self.waiting = others
        if answered and self.on_answered is not None:
            self.on_answered(answered)
        if free:
            self._take(free)

    def _take(self, keys: list[str]) -> None:
        mine, answered, others = claim(self.store, self.owner, self.run_id, keys, self.lease_s)
        self.ready.extend(mine)
        self.waiting.extend(others)
        if answered and self.on_answered is not None:
            self.on_answered(answered)
