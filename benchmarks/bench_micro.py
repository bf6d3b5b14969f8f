"""Micro-benchmarks: conv2d, conv_transpose2d and matmul, forward + backward.

Times minifb's NumPy path and, when it is importable, PyTorch on the CPU
(restricted to 2 threads, like the machines this project is measured on),
and prints a Markdown table of medians and the minifb / PyTorch ratio.

Run it with ``python benchmarks/bench_micro.py`` (``--quick`` for fewer
repeats).  A runner can call :func:`run` and format the returned rows itself.

Cases (float32):

* ``conv2d``: x (32, 64, 28, 28), w (64, 64, 3, 3), padding 1, with bias.
* ``conv_transpose2d``: x (32, 64, 14, 14), w (64, 32, 4, 4), stride 2,
  padding 1 -> (32, 32, 28, 28), with bias.
* ``matmul``: (1024, 1024) @ (1024, 1024).

Each timing is one forward and one backward with a fixed random output
gradient, every input requiring a gradient.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# Time the checkout this file sits in, even when another minifb is installed (an A/B between two
# worktrees must measure two codes), as bench_kernels.py and run.py do.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minifb.ops.conv import conv2d, conv_transpose2d  # noqa: E402
from minifb.tensor import Tensor  # noqa: E402


def _median_time(step, repeats: int, warmup: int = 2) -> float:
    """Median wall-clock seconds of ``step()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _matmul(a, b):
    from minifb.ops.matmul import MatMul  # the lead's op

    return MatMul.apply(a, b)


def _cases(rng):
    """(name, description, minifb fn, torch fn name, input arrays, options)."""
    f32 = np.float32
    return [
        ("conv2d", "N=32 C=64 28x28 K=64 3x3 pad 1",
         conv2d, "conv2d",
         [rng.standard_normal((32, 64, 28, 28), dtype=f32),
          rng.standard_normal((64, 64, 3, 3), dtype=f32) * f32(0.05),
          rng.standard_normal(64, dtype=f32)],
         {"padding": 1}),
        ("conv_transpose2d", "N=32 64->32 14x14->28x28 k4 s2 p1",
         conv_transpose2d, "conv_transpose2d",
         [rng.standard_normal((32, 64, 14, 14), dtype=f32),
          rng.standard_normal((64, 32, 4, 4), dtype=f32) * f32(0.05),
          rng.standard_normal(32, dtype=f32)],
         {"stride": 2, "padding": 1}),
        ("matmul", "1024x1024 @ 1024x1024",
         _matmul, "matmul",
         [rng.standard_normal((1024, 1024), dtype=f32),
          rng.standard_normal((1024, 1024), dtype=f32)],
         {}),
    ]


def _minifb_step(fn, arrays, options, grad_out):
    def step():
        ts = [Tensor(a, requires_grad=True) for a in arrays]
        fn(*ts, **options).backward(grad_out)
    return step


def _torch_step(torch, name, arrays, options, grad_out, device="cpu"):
    op = torch.matmul if name == "matmul" else getattr(torch.nn.functional, name)
    base = [torch.from_numpy(a).to(device) for a in arrays]
    g = torch.from_numpy(grad_out).to(device)

    def step():
        ts = [t.detach().requires_grad_(True) for t in base]
        op(*ts, **options).backward(g)
    return step


def run(quick: bool = False) -> list[dict]:
    """Time every case; return one dict per case.

    Args:
        quick: fewer repeats (3 instead of 10), for a smoke run.

    Returns:
        A list of ``{"name", "shape", "minifb_s", "torch_s", "ratio"}`` dicts:
        median seconds of one forward + backward, ``torch_s``/``ratio`` ``None``
        when PyTorch is not importable; ``ratio = minifb_s / torch_s``.
    """
    repeats = 3 if quick else 10
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    rows = []
    for name, shape, fn, torch_name, arrays, options in _cases(rng):
        with_grad = [Tensor(a) for a in arrays]
        out_shape = fn(*with_grad, **options).shape
        grad_out = rng.standard_normal(out_shape, dtype=np.float32)
        mine = _median_time(_minifb_step(fn, arrays, options, grad_out), repeats)
        theirs = None
        if torch is not None:
            theirs = _median_time(_torch_step(torch, torch_name, arrays, options, grad_out), repeats)
        rows.append({"name": name, "shape": shape, "minifb_s": mine, "torch_s": theirs,
                     "ratio": None if theirs is None else mine / theirs})
    return rows


def markdown(rows: list[dict]) -> str:
    """Format :func:`run`'s rows as a Markdown table (milliseconds)."""
    lines = ["| op (fwd+bwd, float32) | shape | minifb ms | PyTorch ms | minifb / PyTorch |",
             "| --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        torch_ms = "n/a" if r["torch_s"] is None else f"{r['torch_s'] * 1e3:.1f}"
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['name']} | {r['shape']} | {r['minifb_s'] * 1e3:.1f} | {torch_ms} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 10")
    args = parser.parse_args(argv)
    print(markdown(run(quick=args.quick)))


if __name__ == "__main__":
    main()
