"""Keeping freed memory in the process, for long training runs on Linux (glibc).

A training step allocates much the same large arrays at every step and frees them all at its end (the tape's
saved activations, the gradients), and a step over many timesteps allocates and frees temporaries of several
megabytes all along. By default glibc's ``malloc`` gives memory back to the system:
- it trims the top of its heap whenever more than a trim threshold lies free there;
- it serves arrays above an mmap threshold with mappings of their own;
- it raises both thresholds as it sees large blocks freed, up to 32 MiB and 64 MiB.

So a step can take much of its memory from the system again, every time. Each fresh 4 KiB page costs a page
fault and the kernel's zeroing of it. W2, the convolutional feedback net of ``benchmarks/run.py``, took about
60,000 page faults a step at 32 timesteps (PyTorch's step 3,500), and its time per timestep rose from 13 ms
to 16-18 ms. With :func:`hold_freed_memory` the step took none, and its time per timestep stayed at 13-14 ms
(``benchmarks/NOTES.md``, "Session 18").

Importing minifb does not change the allocator: that would change the whole process that imports it. Call
:func:`hold_freed_memory` in a training script, or start Python with the equivalent environment variables
``MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432``. The ``minifb`` program's ``train``
and ``compare`` call it, since their process is theirs.
"""

import ctypes
import platform

# mallopt's parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Free memory at the top of the heap that :func:`hold_freed_memory` lets the process keep: 1 GiB.
TRIM_THRESHOLD = 1 << 30
#: Arrays up to this size come from the heap after :func:`hold_freed_memory`, not from mappings of their own:
#: 32 MiB, the largest mmap threshold glibc's dynamic rule reaches on a 64-bit system.
MMAP_THRESHOLD = 32 << 20


def hold_freed_memory() -> bool:
    """Make the process's ``malloc`` (glibc) keep memory it frees for its next allocations, rather than
    give it back to the system, so that a training loop's steps reuse the same pages.

    Sets glibc's trim threshold to :data:`TRIM_THRESHOLD` and its mmap threshold to :data:`MMAP_THRESHOLD`
    with ``mallopt``. Setting either turns off glibc's rule that raises them as it goes, so both are set.
    For the whole process, NumPy's arrays and every other library's memory included, and for the rest of its
    life: the process's memory then stays near its peak rather than shrinking after it. Arrays over 32 MiB
    still get mappings of their own and are given back when freed. Calling it again changes nothing.

    Returns:
        True when the settings took (glibc); False elsewhere (macOS, Windows, musl), where nothing is changed.

    Example (at the top of a training script; here only its settings are shown, since a call lasts for the
    whole process):
        >>> from minifb import memory
        >>> memory.TRIM_THRESHOLD // 2 ** 20, memory.MMAP_THRESHOLD // 2 ** 20   # MiB
        (1024, 32)
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
