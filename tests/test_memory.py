"""symkd.memory: freed heap pages go back to the OS, and only when memory runs short."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from symkd.memory import _malloc_trim, available_share, release_if_short

HELD_THEN_FREED = r"""
import json
from symkd.memory import release_freed_heap

def rss():
    return next(int(ln.split()[1]) // 1024 for ln in open("/proc/self/status") if ln.startswith("VmRSS"))

start = rss()
blocks = [bytearray(64 << 10) for _ in range(4000)]  # 250 MB of heap blocks (below the mmap threshold)
pin = bytearray(64 << 10)  # keeps the heap's top in use: free() alone cannot shrink it
full = rss()
del blocks
freed = rss()
trimmed = release_freed_heap()
print(json.dumps({"start": start, "full": full, "freed": freed, "after": rss(), "trimmed": trimmed}))
"""


@pytest.mark.skipif(_malloc_trim() is None or not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_heap_goes_back_to_the_os() -> None:
    """Blocks freed under a live one stay resident until trimmed (what a training step's
    activations do to a long CPU run); the trim gives them back."""
    out = subprocess.run([sys.executable, "-c", HELD_THEN_FREED], capture_output=True, text=True, check=True)
    m = json.loads(out.stdout)
    assert m["trimmed"] is True
    assert m["full"] - m["start"] > 200
    assert m["freed"] - m["start"] > 200, m  # free() kept them
    assert m["freed"] - m["after"] > 200, m  # the trim returned them


def test_trims_only_when_memory_is_short() -> None:
    share = available_share()
    if share is None:
        pytest.skip("no /proc/meminfo here")
    assert 0.0 <= share <= 1.0
    assert release_if_short(0.0) is False  # never short of nothing
    assert release_if_short(1.01) is (_malloc_trim() is not None)  # always short: trims where it can
