"""minifb.memory.hold_freed_memory: the process keeps memory it frees, so a loop that allocates and frees the
same large arrays stops taking fresh pages from the system (each a page fault)."""

import json
import platform
import subprocess
import sys
import textwrap

import pytest

from minifb import memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A training loop's pattern: ten 3.2 MB arrays made and freed together, again and again. The page faults of
# the last 20 rounds are counted, after 10 rounds to settle.
_LOOP = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from minifb import memory
    held = [memory.hold_freed_memory() for _ in range(2)] if sys.argv[1] == "hold" else []
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(30):
        if i == 10:
            start = faults()
        arrays = [np.ones(800_000, np.float32) for _ in range(10)]
        del arrays
    print(json.dumps({"held": held, "faults": faults() - start}))
""")


def _run_loop(mode):
    out = subprocess.run([sys.executable, "-c", _LOOP, mode], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt's settings are glibc's")
def test_a_held_process_reuses_its_freed_pages():
    """By default the rounds keep taking fresh pages (20 rounds x 10 arrays x ~780 pages); held, they reuse the
    first rounds' pages. Calling it twice is harmless and reports True both times."""
    default, held = _run_loop("default"), _run_loop("hold")
    assert held["held"] == [True, True]
    assert default["faults"] > 10_000, default
    assert held["faults"] < 0.05 * default["faults"], (held, default)


def test_elsewhere_it_changes_nothing_and_says_so(monkeypatch):
    """Not Linux, or not glibc: returns False without touching the allocator."""
    touched = []
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *a, **k: touched.append(a))
    monkeypatch.setattr(memory.platform, "system", lambda: "Darwin")
    assert memory.hold_freed_memory() is False
    monkeypatch.setattr(memory.platform, "system", lambda: "Linux")
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert memory.hold_freed_memory() is False
    assert touched == []


def test_it_sets_both_thresholds(monkeypatch):
    """Both of glibc's thresholds are set (setting one turns glibc's rule for the other off): trim 1 GiB, mmap
    32 MiB; a refusal from mallopt (0) is reported as False."""
    calls = []

    class FakeMallopt:
        argtypes = restype = None

        def __call__(self, param, value):
            calls.append((param, value))
            return answer[0]

    class FakeLibc:
        mallopt = FakeMallopt()

    answer = [1]
    monkeypatch.setattr(memory.platform, "system", lambda: "Linux")
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *a, **k: FakeLibc())
    assert memory.hold_freed_memory() is True
    assert sorted(calls) == sorted([(-3, 32 << 20), (-1, 1 << 30)])
    answer[0] = 0
    assert memory.hold_freed_memory() is False
