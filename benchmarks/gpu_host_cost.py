"""Host-side cost per call of the pieces of a GPU step (needs CuPy and a GPU).

On a GPU minifb's training steps are host-bound: the device finishes each small kernel long before Python
has launched the next. This script measures what each piece of the launch path costs the host, in
microseconds per call: small arrays, back-to-back calls, one synchronisation at the end, best of five.

Usage::

    python benchmarks/gpu_host_cost.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import minifb as mf  # noqa: E402
from minifb import backend  # noqa: E402
from minifb import functional as F  # noqa: E402
from minifb import kernels as K  # noqa: E402


def per_call_us(cp, fn, n=3000) -> float:
    """Best-of-five microseconds per call of ``fn`` over ``n`` back-to-back calls."""
    for _ in range(50):
        fn()
    cp.cuda.Device().synchronize()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        cp.cuda.Device().synchronize()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def main() -> None:
    """Print one table row per piece."""
    cp = backend.cupy_or_none()
    if cp is None or not backend.cuda_available():
        print("No GPU (CuPy absent or no device): nothing to measure.")
        return
    x = cp.ones((64, 512), cp.float32)
    b = cp.ones(512, cp.float32)
    g = cp.ones_like(x)
    w = cp.ones((512, 512), cp.float32)
    module = K.load_module("bias_act", K._device_of((x,)))
    fn = module.get_function("bias_act_fwd")
    args = (x, b, cp.empty_like(x), np.int64(x.size), np.int32(512), np.int32(1), np.int32(1))
    rows = {
        "cp.empty_like": lambda: cp.empty_like(x),
        "cp.zeros(512)": lambda: cp.zeros(512, cp.float32),
        "x + b (one CuPy elementwise op)": lambda: x + b,
        "cp.maximum(x + b, 0) (two ops)": lambda: cp.maximum(x + b, 0),
        "cp.concatenate of 8 (64, 512)": lambda: cp.concatenate([x] * 8),
        "x @ w.T (cuBLAS, 64x512x512)": lambda: x @ w.T,
        "RawModule.get_function": lambda: module.get_function("bias_act_fwd"),
        "RawKernel call, prepared arguments": lambda: fn((128,), (256,), args),
        "kernels.launch, prepared arguments": lambda: K.launch("bias_act", "bias_act_fwd", (128,), (256,), args),
        "kernels.bias_act": lambda: K.bias_act(x, b, "relu"),
        "kernels.bias_act_backward": lambda: K.bias_act_backward(g, x, "relu"),
    }
    print("| piece | host us per call |\n| --- | ---: |")
    for name, f in rows.items():
        print(f"| {name} | {per_call_us(cp, f):.1f} |")
    xt = mf.tensor(np.ones((64, 512), np.float32), device="cuda", requires_grad=True)
    bt = mf.tensor(np.ones(512, np.float32), device="cuda", requires_grad=True)
    for mode in ("cuda", "off"):
        with K.use(mode):
            cost = per_call_us(cp, lambda: F.bias_act(xt, bt, "relu").sum().backward(), 1000)
            print(f"| F.bias_act(x, b, relu).sum().backward(), kernels {mode} | {cost:.1f} |")


if __name__ == "__main__":
    main()
