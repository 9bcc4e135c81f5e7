"""Signs of life of a data-parallel run's processes, so that a stopped rank is named quickly.

Why: when a collective times out, the survivors must say which rank stopped. Asking the others
(``collectives.unresponsive_ranks``) needs a wait of its own: a survivor may reach the question
up to one timeout late, so the answer came two or three timeouts after the rank stopped (60 s
for ``--dist-timeout 20``). Here every process says it is alive without being asked: a thread
of its own adds one to its counter in the process group's key-value store every ``period``
seconds, with the number of collectives it has entered. After a failed collective a survivor
reads the counters twice, ``window`` seconds apart: a rank whose counter did not move has
stopped (dead, SIGSTOP, a hung machine), and one that moves but has entered fewer collectives
is alive but stuck elsewhere. Nobody has to answer, so the error comes within the timeout plus
the window (a few seconds).

The thread keeps beating while its main thread waits inside a collective (the wait releases the
GIL), so a slow rank is never taken for a stopped one. Without a store (a group made without
one), or when the store itself does not answer, ``Heartbeat.start`` and ``stopped`` return
``None`` and the caller falls back to asking the ranks.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch.distributed as dist

PREFIX = "nasp/heartbeat"


class Heartbeat:
    """This process's beat, and what the others' beats say."""

    def __init__(self, store: Any, prefix: str, rank: int, ranks: Sequence[int],
                 period: float) -> None:
        self.store, self.prefix, self.rank = store, prefix, rank
        self.ranks, self.period = list(ranks), period
        self.entered = 0  # collectives this process has entered (the main thread counts)
        self._sent = -1
        self._stop = threading.Event()
        store.set(self._key("who", rank), f"process {os.getpid()} on {socket.gethostname()}")
        self._beat()
        self._thread = threading.Thread(target=self._run, name="nasp-heartbeat", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, ranks: Sequence[int], rank: int, timeout_s: float) -> Heartbeat | None:
        """A beat for global ``rank`` among ``ranks`` in the default group's store, or None
        where there is no store to beat in. Every rank of the group must call it, in the same
        order as its other heartbeats (the n-th heartbeat of each rank meet under one key)."""
        try:
            store = dist.distributed_c10d._get_default_store()
            group = ",".join(map(str, ranks))
            n = store.add(f"{PREFIX}/{group}/count/{rank}", 1)
            return cls(store, f"{PREFIX}/{group}/{n}", rank, ranks,
                       period=min(max(timeout_s / 10, 0.1), 1.0))
        except Exception:  # no store, or not one we can use: the caller asks the ranks
            return None

    @property
    def window(self) -> float:
        """How long a rank may show no sign of life before it is called stopped: three beats,
        and no less than two seconds (a thread of a busy machine may wait a while to run)."""
        return max(2.0, 3 * self.period)

    def _key(self, kind: str, rank: int) -> str:
        return f"{self.prefix}/{kind}/{rank}"

    def _beat(self) -> None:
        entered = self.entered
        if entered != self._sent:  # first: a reader that sees a beat finds this key
            self.store.set(self._key("at", self.rank), str(entered))
            self._sent = entered
        self.store.add(self._key("beat", self.rank), 1)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self._beat()
            except Exception:  # the store is gone (the run is ending): stop beating
                return

    def _read(self) -> dict[int, tuple[int, int]]:
        """(beats, collectives entered) of every other rank (0, 0 for one never seen)."""
        out = {}
        for r in self.ranks:
            if r == self.rank:
                continue
            beats = int(self.store.add(self._key("beat", r), 0))
            at = int(self.store.get(self._key("at", r))) if beats else 0
            out[r] = (beats, at)
        return out

    def describe(self, index: int) -> str:
        """"process PID on HOST" of the group's ``index``-th rank, or "" when it never said."""
        key = self._key("who", self.ranks[index])
        try:
            if self.store.check([key]):
                return self.store.get(key).decode()
        except Exception:  # the store is gone: the rank's number will do
            pass
        return ""

    def stopped(self) -> list[int] | None:
        """Group-local indices of the ranks that showed no sign of life for ``window`` seconds
        or are alive but have entered fewer collectives than this one; None when the store does
        not answer in time (the caller then asks the ranks)."""
        found: list[list[int] | None] = [None]

        def look() -> None:
            first = self._read()
            time.sleep(self.window)
            second = self._read()
            found[0] = [self.ranks.index(r) for r in sorted(second)
                        if second[r][0] == first[r][0] or second[r][1] < self.entered]

        reader = threading.Thread(target=look, name="nasp-heartbeat-check", daemon=True)
        reader.start()
        reader.join(self.window + 10.0)  # a store that hangs leaves this thread behind
        return found[0]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2 * self.period + 1.0)
