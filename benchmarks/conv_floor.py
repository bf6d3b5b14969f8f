"""How far could faster data movement take minifb's convolutions?  The copy-free bound.

minifb's NumPy convolutions spend their time in two kinds of work: matrix products (OpenBLAS) and
the copies around them (the im2col gather, the channels-last padding copy, col2im's additions, the
depth-to-space copy, the output gradient's layout copy).  Compiling the copies (C++, OpenMP) is the
lever benchmarks/NOTES.md proposed for the convolution targets.  This script measures what that lever
could give *at most*: it times each case's step as it is and with every one of those copies skipped
(the buffers they would fill are reused, already allocated, and left as they are), side by side with
PyTorch, in one process, alternating, with the runner's pause before every timed step.

The skipped steps compute wrong numbers; only their time is read, and a workload's parameters are put
back after each of them (outside the timed region), so that their garbage never reaches the network
that the steps as they are time.  Their ratio to PyTorch is a lower bound for any implementation that
keeps minifb's matrix products and elementwise work and makes the copies faster, however it makes them.

Run it with ``python benchmarks/conv_floor.py`` (``--rounds N``, ``--only conv2d,W2``, ``--smoke``).
The results are in benchmarks/NOTES.md, "Session 11". It times the NumPy im2col path, which is what
NumPy convolutions ran on until session 15 and still run on where minifb.cpu_conv cannot be built.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# Time the checkout this file sits in (see run.py), and reuse run.py's workloads and settings.
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import run as runner  # noqa: E402  benchmarks/run.py
from minifb import cpu_conv, kernels  # noqa: E402
from minifb.ops import conv  # noqa: E402

CASES = ("conv2d", "conv_transpose2d", "W2")


class CopyFree:
    """Stand-ins for ``minifb.ops.conv``'s copy functions that skip the copy, and a switch between them.

    Each stand-in has the signature of the function it replaces (checked when the switch is built, so a
    change to ``conv.py`` fails here loudly rather than measuring the wrong thing) and returns an array
    of the shape the real one would, from buffers allocated once and never written after their first
    zero fill: no copy, no allocation, no page fault, and finite values.  Two exceptions: col2im's
    stand-in leaves the output its caller allocated unwritten, and depth-to-space's returns a fresh copy
    of its zero buffer, because its result is an op's output (a transposed convolution's, to which the
    bias is then added in place) and every implementation writes its output once.
    """

    NAMES = ("_channels_last", "_im2col", "_rows", "_col2im", "_depth_to_space")

    def __init__(self):
        self.real = {name: getattr(conv, name) for name in self.NAMES}
        self.fake = {name: getattr(self, name) for name in self.NAMES}
        for name in self.NAMES:
            if inspect.signature(self.real[name]) != inspect.signature(self.fake[name]):
                raise RuntimeError(f"conv_floor: conv.{name} changed its signature "
                                   f"{inspect.signature(self.real[name])}; update its stand-in here")
        self.buffers = {}

    def on(self, enabled):
        """Install the stand-ins (``enabled``) or put the real functions back."""
        for name, fn in (self.fake if enabled else self.real).items():
            setattr(conv, name, fn)

    def bytes_written(self, step):
        """Bytes the real copy functions write during one call of ``step``: every array they return
        that is not a view of their input (col2im: its output).  A copy's floor is these bytes over the
        machine's write bandwidth."""
        total = [0]

        def counting(name, fn):
            def wrapper(*args, **kwargs):
                result = fn(*args, **kwargs)
                if name == "_col2im" or not np.may_share_memory(result, args[0]):
                    total[0] += result.nbytes
                return result
            return wrapper

        for name, fn in self.real.items():
            setattr(conv, name, counting(name, fn))
        try:
            step()
        finally:
            self.on(False)
        return total[0]

    def _buffer(self, name, shape, dtype):
        key = (name, tuple(shape), np.dtype(dtype))
        if key not in self.buffers:
            self.buffers[key] = np.zeros(shape, dtype=dtype)
        return self.buffers[key]

    def _channels_last(self, x, pad, scratch):
        x = x[:, :, max(0, -pad[0]): x.shape[2] - max(0, -pad[1]), max(0, -pad[2]): x.shape[3] - max(0, -pad[3])]
        pt, pb, pl, pr = (max(0, p) for p in pad)
        n, c, h, w = x.shape
        nhwc = x.transpose(0, 2, 3, 1)
        if not (pt or pb or pl or pr) and nhwc.flags.c_contiguous:
            return nhwc                                    # the real one copies nothing here either
        return self._buffer("padded", (n, h + pt + pb, w + pl + pr, c), x.dtype)

    def _im2col(self, x, geom, out_hw, scratch):
        n, c = x.shape[:2]
        (kh, kw), (oh, ow), g = geom.kernel, out_hw, geom.groups
        return self._buffer("cols", (n * oh * ow, g, kh * kw * (c // g)), x.dtype)

    def _rows(self, gy, groups, scratch):
        n, k, oh, ow = gy.shape
        nhwc = gy.transpose(0, 2, 3, 1)
        if not nhwc.flags.c_contiguous:
            nhwc = self._buffer("rows", (n, oh, ow, k), gy.dtype)
        return nhwc.reshape(n * oh * ow, groups, k // groups)

    def _col2im(self, cols, n, c, in_hw, geom, out_hw, scratch, out):
        return out                                         # left as allocated by the caller

    def _depth_to_space(self, y, stride, groups, in_hw, offset):
        n = y.shape[0]
        channels = y.shape[1] // (stride[0] * stride[1])
        # a fresh array, written once: the caller adds the bias to it in place
        return conv._nchw_view(self._buffer("space", (n, *in_hw, channels), y.dtype).copy())


def _timed(step, settle_s, keep=()):
    """Seconds one call of ``step`` takes, after a collection and a pause of ``settle_s``.  The values of
    the minifb parameters ``keep`` are put back after it (outside the timed region): the copy-free step
    updates them from garbage gradients."""
    saved = [p.data.copy() for p in keep]
    gc.collect()
    if settle_s > 0:
        time.sleep(settle_s)
    t0 = time.perf_counter()
    step()
    elapsed = time.perf_counter() - t0
    for p, values in zip(keep, saved):
        p.data[...] = values                # in place: the optimiser may hold views of p.data
    return elapsed


def measure(case, switch, rounds, settle_s):
    """Alternate minifb as it is, minifb copy-free and PyTorch (if any) for ``rounds`` rounds.

    The copy-free steps leave ``case.params`` as they found them, so the steps as they are train the real
    network undisturbed.

    Returns ``{"as_is_s", "copy_free_s", "copy_bytes", "torch_s", "ratio_as_is", "ratio_copy_free"}``:
    medians of the step times, the bytes the copies write in one step (:meth:`CopyFree.bytes_written`),
    and medians of the per-round ratios to PyTorch (``None`` without PyTorch).
    """
    steps = [lambda: (switch.on(False), case.mf_step()), lambda: (switch.on(True), case.mf_step())]
    keep = [(), case.params]
    if case.torch_step:
        steps.append(case.torch_step)
        keep.append(())
    try:
        for who in list(range(len(steps))) * 2:                # warm-up: buffers, BLAS threads
            _timed(steps[who], 0.0, keep[who])
        times = [[] for _ in steps]
        for r in range(rounds):
            order = range(len(steps)) if r % 2 == 0 else reversed(range(len(steps)))
            for who in order:
                times[who].append(_timed(steps[who], settle_s, keep[who]))
    finally:
        switch.on(False)
    row = {"as_is_s": statistics.median(times[0]), "copy_free_s": statistics.median(times[1]),
           "copy_bytes": switch.bytes_written(case.mf_step),
           "torch_s": None, "ratio_as_is": None, "ratio_copy_free": None}
    if case.torch_step:
        row["torch_s"] = statistics.median(times[2])
        row["ratio_as_is"] = statistics.median(a / t for a, t in zip(times[0], times[2]))
        row["ratio_copy_free"] = statistics.median(f / t for f, t in zip(times[1], times[2]))
    return row


def gather_rate(batch=32, repeats=21):
    """This machine's rate, in bytes per second, for the copy every im2col design must make: the column
    matrix of the conv2d micro case (``batch`` images of 64 channels, 28x28, 3x3 taps) gathered from a
    sliding-window view into a buffer that is already allocated and in use -- the best case, back to
    back, with no pause before it.  Median of ``repeats``."""
    n, h, w, c, k = batch, 28, 28, 64, 3
    padded = np.random.default_rng(0).random((n, h + 2, w + 2, c), dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
    cols = np.empty(windows.shape, np.float32)
    np.copyto(cols, windows)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(cols, windows)
        times.append(time.perf_counter() - t0)
    return cols.nbytes / statistics.median(times)


def markdown(rows, rate):
    """The rows as a Markdown table: ms, ratios to PyTorch where it ran, and the time the copies' bytes
    would take at ``rate`` (bytes per second, :func:`gather_rate`)."""
    def ratio(value):
        return "-" if value is None else f"{value:.2f}x"

    lines = ["| case | minifb ms | copy-free ms | copies ms | MB the copies write | PyTorch ms | ratio "
             "| copy-free ratio | copies' budget at 1.5x, ms | those MB at the gather rate, ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        torch_ms = budget = "-"
        if r["torch_s"] is not None:
            torch_ms = f"{r['torch_s'] * 1e3:.1f}"
            budget = f"{(1.5 * r['torch_s'] - r['copy_free_s']) * 1e3:.1f}"
        lines.append(f"| {r['name']} | {r['as_is_s'] * 1e3:.1f} | {r['copy_free_s'] * 1e3:.1f} "
                     f"| {(r['as_is_s'] - r['copy_free_s']) * 1e3:.1f} | {r['copy_bytes'] / 1e6:.1f} | {torch_ms} "
                     f"| {ratio(r['ratio_as_is'])} | {ratio(r['ratio_copy_free'])} | {budget} "
                     f"| {r['copy_bytes'] / rate * 1e3:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    """Parse the command line, time the cases, print the table; return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=runner._positive_int, default=21,
                        help="timed steps of each variant (default 21)")
    parser.add_argument("--only", default=",".join(CASES),
                        help=f"comma-separated cases from {', '.join(CASES)} (default: all)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes, 2 rounds, no pause (for tests)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CASES))
    if unknown or not names:
        parser.error(f"--only: unknown case(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(CASES)}")
    rounds, settle_s = (2, 0.0) if args.smoke else (args.rounds, runner.SETTLE_S)
    threads = 1 if args.smoke else 2
    torch = runner._import_torch(threads)
    runner._limit_blas(threads)
    try:
        micro = {c.name: c for c in runner.build_micro(torch, small=args.smoke)}
        switch = CopyFree()
        rows = []
        for name in names:
            case = micro[name] if name in micro else runner.build(name, torch, "smoke" if args.smoke else "full")
            # the NumPy im2col path, whatever MINIFB_KERNELS and MINIFB_CPU_CONV say (the compiled
            # convolution of session 15 has no copies to skip); the copy-free steps compute garbage
            with kernels.use("off"), cpu_conv.use(False), np.errstate(all="ignore"):
                rows.append({"name": name, **measure(case, switch, rounds, settle_s)})
    finally:
        if runner._BLAS_LIMIT is not None:                    # a caller's BLAS threads as they were
            runner._BLAS_LIMIT.restore_original_limits()
    rate = gather_rate(batch=2 if args.smoke else 32)
    print(f"### The copy-free bound ({threads} thread(s), medians of {rounds} rounds"
          f"{'' if torch else '; PyTorch not importable'})\n")
    print(markdown(rows, rate))
    print(f"\nGather rate (conv2d's column matrix, best case, back to back): {rate / 1e9:.1f} GB/s")
    return rows


if __name__ == "__main__":
    main()
