"""Fused CUDA kernels against the unfused array-module sequence: memory traffic, and GPU time when possible.

Usage::

    python benchmarks/bench_kernels.py [--repeat N]

For every kernel in ``kernels/`` and a representative shape it prints

* the bytes one fused launch moves (each input read once, each output written once), against the bytes
  the unfused NumPy/CuPy sequence in ``minifb.kernel_refs`` moves, counted op by op from the shapes (every
  elementwise op / reduction reads its operands and writes its result: the sequence materialises each
  intermediate). These are DRAM-traffic models, known before any GPU run; the ratio is the saving.
* On a GPU (CuPy present): the median time of the fused kernel and of the unfused CuPy reference, the fused
  kernel's achieved bandwidth (model bytes / time) and the device's copy bandwidth (a large device-to-device
  copy) for comparison.
* The register / spill report of the kernels (``benchmarks/results/kernel_registers.txt``, written by
  ``tests/test_kernels.py``; regenerated here when missing and a CUDA compiler is present).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))   # run.py, for its argument parser of counts

from minifb import backend  # noqa: E402
from minifb import kernel_refs as R  # noqa: E402
from minifb import kernels as K  # noqa: E402
from run import _positive_int  # noqa: E402  counts >= 1: no median of 0 samples, no time per call of 0

REPORT = ROOT / "benchmarks" / "results" / "kernel_registers.txt"
F4 = 4  # bytes per float32


@dataclass
class Case:
    """One kernel at one shape: its traffic model and how to run it fused and unfused."""
    name: str
    shape: str
    fused_bytes: int
    unfused_ops: list = field(default_factory=list)   # (op, bytes read, bytes written)
    make: object = None                                # xp -> (fused_fn, unfused_fn)

    @property
    def unfused_bytes(self) -> int:
        return sum(r + w for _, r, w in self.unfused_ops)


def ew(op, reads, writes, size=F4):
    """An unfused elementwise/reduction step reading ``reads`` and writing ``writes`` elements."""
    return (op, reads * size, writes * size)


def _maxpool_bwd_pair(xp, x):
    g, arg = R.maxpool_forward_ref(x, 2)
    return (lambda: K.maxpool_backward(g, arg, x.shape, 2),
            lambda: R.maxpool_backward_ref(g, arg, x.shape, 2))


def cases() -> list[Case]:
    out = []
    rng = np.random.default_rng(0)

    def arr(xp, *shape):
        return xp.asarray(rng.standard_normal(shape).astype(np.float32))

    # bias_act on a conv output, relu
    N, C, H, W = 32, 64, 28, 28
    n = N * C * H * W
    out.append(Case("bias_act_fwd (relu)", f"({N},{C},{H},{W})", (2 * n + C) * F4,
                    [ew("x + b", n + C, n), ew("maximum(t, 0)", n, n)],
                    lambda xp: (lambda x=arr(xp, N, C, H, W), b=arr(xp, C): (
                        lambda: K.bias_act(x, b, "relu"), lambda: R.bias_act_ref(x, b, "relu")))()))
    out.append(Case("bias_act_bwd (relu)", f"({N},{C},{H},{W})", (3 * n + C) * F4,
                    [("y > 0", n * F4, n), ("astype float32", n, n * F4), ew("g * mask", 2 * n, n),
                     ew("dx.sum(axis=(0, 2))", n, C)],
                    lambda xp: (lambda g=arr(xp, N, C, H, W), y=arr(xp, N, C, H, W): (
                        lambda: K.bias_act_backward(g, y, "relu"), lambda: R.bias_act_backward_ref(g, y, "relu")))()))
    # merger, tanh, on a conv feature map
    out.append(Case("merger_fwd (tanh)", f"({N},{C},{H},{W})", (4 * n + C) * F4,
                    [ew("fb + b", n + C, n), ew("tanh", n, n), ew("x + a", 2 * n, n)],
                    lambda xp: (lambda x=arr(xp, N, C, H, W), f=arr(xp, N, C, H, W), b=arr(xp, C): (
                        lambda: K.merger_forward(x, f, b, "tanh"), lambda: R.merger_forward_ref(x, f, b, "tanh")))()))
    out.append(Case("merger_bwd (tanh)", f"({N},{C},{H},{W})", (3 * n + C) * F4,
                    [ew("a * a", n, n), ew("1 - .", n, n), ew("g * .", 2 * n, n), ew("sum", n, C)],
                    lambda xp: (lambda g=arr(xp, N, C, H, W), a=arr(xp, N, C, H, W): (
                        lambda: K.merger_backward(g, a, "tanh"), lambda: R.merger_backward_ref(g, a, "tanh")))()))
    # LSTM / GRU cells
    B, Hd = 64, 512
    m = B * Hd
    out.append(Case("lstm_cell_fwd", f"B={B} H={Hd}", (9 * m + 6 * m) * F4,
                    [ew("gi + gh", 8 * m, 4 * m), ew("sigmoid x3 (4 ops each)", 12 * m, 12 * m),
                     ew("tanh g", m, m), ew("f*c", 2 * m, m), ew("i*g", 2 * m, m), ew("add", 2 * m, m),
                     ew("tanh c", m, m), ew("o*tc", 2 * m, m), ew("concat gates", 4 * m, 4 * m)],
                    lambda xp: (lambda gi=arr(xp, B, 4 * Hd), gh=arr(xp, B, 4 * Hd), c=arr(xp, B, Hd): (
                        lambda: K.lstm_cell_forward(gi, gh, c), lambda: R.lstm_cell_forward_ref(gi, gh, c)))()))
    out.append(Case("gru_cell_fwd", f"B={B} H={Hd}", (7 * m + 5 * m) * F4,
                    [ew("gi_r+gh_r, gi_z+gh_z", 4 * m, 2 * m), ew("sigmoid x2", 8 * m, 8 * m),
                     ew("r*gh_n", 2 * m, m), ew("gi_n + .", 2 * m, m), ew("tanh", m, m), ew("1-z", m, m),
                     ew("(1-z)*n", 2 * m, m), ew("z*h", 2 * m, m), ew("add", 2 * m, m),
                     ew("concat saved", 4 * m, 4 * m)],
                    lambda xp: (lambda gi=arr(xp, B, 3 * Hd), gh=arr(xp, B, 3 * Hd), h=arr(xp, B, Hd): (
                        lambda: K.gru_cell_forward(gi, gh, h), lambda: R.gru_cell_forward_ref(gi, gh, h)))()))
    # im2col / col2im, 3x3 pad 1 conv
    N2, C2, H2, k = 32, 32, 28, 3
    nx, ncols, npad = N2 * C2 * H2 * H2, C2 * k * k * N2 * H2 * H2, N2 * C2 * (H2 + 2) ** 2
    out.append(Case("im2col 3x3 p1", f"({N2},{C2},{H2},{H2})", (nx + ncols) * F4,
                    [ew("pad", nx, npad), ew("gather copy", ncols, ncols)],
                    lambda xp: (lambda x=arr(xp, N2, C2, H2, H2): (
                        lambda: K.im2col(x, k, k, 1, 1), lambda: R.im2col_ref(x, k, k, 1, 1)))()))
    out.append(Case("col2im 3x3 p1", f"({N2},{C2},{H2},{H2})", (ncols + nx) * F4,
                    [ew("zeros", 0, npad)] + [ew(f"slice-add tap {t}", 2 * ncols // 9, ncols // 9) for t in range(9)]
                    + [ew("crop copy", nx, nx)],
                    lambda xp: (lambda c=arr(xp, C2 * 9, N2 * H2 * H2): (
                        lambda: K.col2im(c, (N2, C2, H2, H2), k, k, 1, 1),
                        lambda: R.col2im_ref(c, (N2, C2, H2, H2), k, k, 1, 1)))()))
    # softmax cross-entropy
    Bs, Ks = 256, 1000
    e = Bs * Ks
    out.append(Case("softmax_xent", f"({Bs},{Ks})", (2 * e + 3 * Bs) * F4,
                    [ew("max", e, Bs), ew("z - m", e, e), ew("exp", e, e), ew("sum", e, Bs), ew("log", Bs, Bs),
                     ew("e / s", e, e), ew("onehot -= 1", Bs, Bs), ew("* scale", e, e)],
                    lambda xp: (lambda z=arr(xp, Bs, Ks), lab=xp.asarray(rng.integers(0, Ks, Bs)): (
                        lambda: K.softmax_xent(z, lab), lambda: R.softmax_xent_ref(z, lab)))()))
    # max pool 2x2
    no = N * C * (H // 2) * (W // 2)
    out.append(Case("maxpool_fwd 2x2", f"({N},{C},{H},{W})", (n + 2 * no) * F4,
                    [ew("stack windows", n, n), ew("argmax", n, 2 * no), ew("take", n + 2 * no, no),
                     ew("index arithmetic", 4 * no, 2 * no)],
                    lambda xp: (lambda x=arr(xp, N, C, H, W): (
                        lambda: K.maxpool_forward(x, 2), lambda: R.maxpool_forward_ref(x, 2)))()))
    out.append(Case("maxpool_bwd 2x2", f"({N},{C},{H},{W})", (2 * no + n) * F4,
                    [ew("window index", 6 * no, 3 * no), ew("zeros", 0, n)]
                    + [ew(f"where + slice-add tap {t}", 3 * no, 2 * no) for t in range(4)],
                    lambda xp: _maxpool_bwd_pair(xp, arr(xp, N, C, H, W))))
    # optimisers over a 10M-parameter buffer
    P = 10_000_000
    out.append(Case("sgd_update (momentum)", f"n={P}", 5 * P * F4,
                    [ew("buf *= m", P, P), ew("(1-d)*g", P, P), ew("buf += .", 2 * P, P), ew("lr*buf", P, P),
                     ew("p -= .", 2 * P, P)],
                    lambda xp: (lambda p=arr(xp, P), g=arr(xp, P), b=arr(xp, P): (
                        lambda: K.sgd_update(p, g, b, 0.01, 0.9),
                        lambda: R.sgd_update_ref(p, g, b, 0.01, 0.9)))()))
    out.append(Case("adam_update", f"n={P}", 7 * P * F4,
                    [ew("m *= b1", P, P), ew("(1-b1)*g", P, P), ew("m += .", 2 * P, P), ew("v *= b2", P, P),
                     ew("g*g", 2 * P, P), ew("(1-b2)*.", P, P), ew("v += .", 2 * P, P), ew("sqrt v", P, P),
                     ew("/ sqrt(bc2)", P, P), ew("+ eps", P, P), ew("m / .", 2 * P, P), ew("* step", P, P),
                     ew("p -= .", 2 * P, P)],
                    lambda xp: (lambda p=arr(xp, P), g=arr(xp, P), m_=arr(xp, P) * 0, v=arr(xp, P) * 0: (
                        lambda: K.adam_update(p, g, m_, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 10),
                        lambda: R.adam_update_ref(p, g, m_, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 10)))()))
    return out


def _gpu_time(cupy, fn, repeat, burst=1):
    """Median seconds per call of ``fn`` between two device events around ``burst`` back-to-back calls.

    ``burst=1`` times one call from an idle device: the host's work to launch it (Python, CuPy, the
    driver) is inside the interval. With a burst the launches queue up while the device works, so when
    the device is slower than the host the time per call is the kernels' own.
    """
    fn()  # warm-up (compiles on first use)
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeat):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        for _ in range(burst):
            fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3 / burst)
    return statistics.median(times)


def copy_bandwidth(cupy, nbytes=1 << 28, repeat=10):
    """Device-to-device copy bandwidth (bytes read + written per second)."""
    a = cupy.empty(nbytes // 4, dtype=np.float32)
    b = cupy.empty_like(a)
    t = _gpu_time(cupy, lambda: cupy.copyto(b, a), repeat)
    return 2 * nbytes / t


def print_register_report():
    if not REPORT.is_file() and K.gpu_compiler() is not None:
        K.gpu_compile_report(out=REPORT)
    print("\n## Registers and spills per kernel\n")
    if REPORT.is_file():
        print(REPORT.read_text())
    else:
        print("(no report: run tests/test_kernels.py on a machine with nvcc or NVRTC)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=_positive_int, default=20, help="timed samples per kernel on a GPU (>= 1)")
    ap.add_argument("--burst", type=_positive_int, default=20, help="back-to-back calls per burst sample (>= 1)")
    args = ap.parse_args(argv)

    cupy = backend.cupy_or_none()
    all_cases = cases()
    print("## Memory traffic per launch: fused kernel vs the unfused array-module sequence (model)\n")
    print(f"| {'kernel':<22} | {'shape':<18} | {'fused MB':>9} | {'unfused MB':>10} | {'saving':>6} |")
    print(f"|{'-' * 24}|{'-' * 20}|{'-' * 11}|{'-' * 12}|{'-' * 8}|")
    for c in all_cases:
        print(f"| {c.name:<22} | {c.shape:<18} | {c.fused_bytes / 1e6:>9.1f} | {c.unfused_bytes / 1e6:>10.1f} | "
              f"{c.unfused_bytes / c.fused_bytes:>5.1f}x |")

    if cupy is None:
        print("\nNo GPU (CuPy absent or no device): timings skipped; the table above is the expected saving.")
    else:
        bw = copy_bandwidth(cupy)
        print(f"\n## GPU timings ({cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}), "
              f"device copy bandwidth {bw / 1e9:.0f} GB/s\n")
        print("One call from an idle device (host launch work included), and per call in a burst of "
              f"{args.burst} back-to-back calls (the device's own time when it, not the host, is the "
              "bottleneck); bandwidth from the burst time.\n")
        print(f"| {'kernel':<22} | {'fused call us':>13} | {'unfused call us':>15} | {'fused burst us':>14} | "
              f"{'unfused burst us':>16} | {'burst speed-up':>14} | {'fused GB/s':>10} | {'% of copy':>9} |")
        print(f"|{'-' * 24}|{'-' * 15}|{'-' * 17}|{'-' * 16}|{'-' * 18}|{'-' * 16}|{'-' * 12}|{'-' * 11}|")
        with K.use("cuda"):
            for c in all_cases:
                fused, unfused = c.make(cupy)
                tf1, tu1 = _gpu_time(cupy, fused, args.repeat), _gpu_time(cupy, unfused, args.repeat)
                tf = _gpu_time(cupy, fused, args.repeat, args.burst)
                tu = _gpu_time(cupy, unfused, args.repeat, args.burst)
                gbs = c.fused_bytes / tf / 1e9
                print(f"| {c.name:<22} | {tf1 * 1e6:>13.1f} | {tu1 * 1e6:>15.1f} | {tf * 1e6:>14.1f} | "
                      f"{tu * 1e6:>16.1f} | {tu / tf:>13.1f}x | {gbs:>10.0f} | {100 * gbs * 1e9 / bw:>8.0f}% |")
    print_register_report()


if __name__ == "__main__":
    main()
