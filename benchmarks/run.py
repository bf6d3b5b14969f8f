"""One runner for minifb's benchmarks: feedback networks, an LSTM and micro-ops, side by side with PyTorch.

Usage::

    python benchmarks/run.py [--quick | --smoke] [--json FILE] [--threads N] [--only W1,W2,...]
    python benchmarks/run.py --profile W2 [--profiler cprofile]  # where minifb's step spends its time

Workloads (float32, batch-first / NCHW).  A *step* is the forward pass over all
timesteps + the loss + backprop-through-time + one SGD update (lr 0.01):

* **W1 dense feedback** -- x (64, 784) fed for T=8 steps, state s (64, 128) from
  zeros; ``a = x + relu(s Wfb + bfb)`` (a Merger), ``h1 = relu(a W1 + b1)``,
  ``h2 = relu(h1 W2 + b2)`` (the Splitter), ``logits = h2 W3 + b3``; mean
  cross-entropy of the last step.  ``nn.FeedbackChain`` + ``nn.Recur``.
* **W2 conv feedback** -- x (32, 1, 28, 28) for T=4 steps, state s2 (32, 64, 14, 14);
  ``a1 = relu(conv 1->32 3x3 p1)(x) + convT(64->32, k4 s2 p1)(s2)``,
  ``a2 = relu(conv 32->64 3x3 s2 p1)(a1)`` (the Splitter),
  ``a3 = relu(conv 64->64 3x3 s2 p1)(a2)``, ``logits = Dense(3136->10)``; last-step
  cross-entropy.  ``nn.FeedbackChain`` + ``nn.Recur``.
* **W3 LSTM** -- one-hot vocabulary 64, hidden 256, sequence 32, batch 32,
  Dense(256->64) at every step, mean cross-entropy over all steps
  (``nn.LSTMCell`` in ``nn.Recur``; PyTorch peer: ``torch.nn.LSTMCell`` in a
  Python loop, the same structure).
* **W4 micro** -- conv2d, conv_transpose2d, matmul 1024^3, each forward +
  backward; the cases and step functions are those of ``benchmarks/bench_micro.py``.

How it measures:

* minifb and PyTorch eager (``torch.set_num_threads(2)``, and NumPy's BLAS on 2
  threads through threadpoolctl; ``--threads N`` changes both) run in the same
  process, the PyTorch model holding a copy of minifb's initial weights; the
  first loss of each must agree to 1e-4 (relative), and every parameter's gradient
  after that first step to 1e-3 (largest difference relative to the PyTorch
  gradient's largest magnitude: W3's first loss is ~ln 64 whatever its weights),
  or the row is flagged; a micro case (no loss) compares its output and input
  gradients once instead.
* Steps alternate minifb, PyTorch, PyTorch, minifb, ... after warm-up; the
  reported time is the median (20 steps; ``--quick``: up to 5, stopping after
  ~5 s per case).  The headline ratio is the median of the per-pair ratios
  (each minifb step against the PyTorch step beside it), which is robust to
  the load of a shared machine drifting during the run; the ratio of the
  medians and of the best steps are shown too.
* A row is judged against its target ("ok" / "MISS") only when its first
  losses agree and its timings are steady; it is "NOISY" (and its target
  counted as not met) when the paired and the best-step ratios differ by
  more than 25% of the larger, or when either library's step times spread
  over more than 2x (slowest / fastest): rerun it.  The JSON's rows hold each verdict, NOISY
  reason, GFLOP/s and % of the GEMM rate; the JSON is strict (NaN or
  infinity written as null).
* Before every timed step: a garbage collection and a 0.15 s pause
  (``SETTLE_S``), so that the step does not share the cores with the other
  library's worker threads still spinning from its last step (OpenBLAS's
  spin for ~0.1 s); without it PyTorch steps that followed minifb steps ran
  up to 2x slower and the ratios flattered minifb.
* GFLOP/s counts the matrix products (GEMMs, convolutions) a step needs,
  layer by layer: each forward call, and each weight and input gradient that
  backprop must compute (each costing what the forward product does) -- not
  those it can skip: the workloads take their loss on the last step only
  (W1, W2), and need no gradient for a constant input or initial state.
  Elementwise work is ignored.  The rate is set against the machine's float32
  GEMM rate measured here (the better of NumPy's and PyTorch's 2048^3
  ``matmul``, each measured after the runner's pause).
* Peak memory of a step (both libraries, comparable): measured in a child
  process started with glibc's ``MALLOC_MMAP_THRESHOLD_=4096`` (so every
  array is its own mapping and freeing it returns the pages to the OS, for
  NumPy and PyTorch alike); after warm-up, the resident-set high-water mark is
  reset (``/proc/self/clear_refs`` = 5) and the step's peak is
  ``VmHWM - VmRSS before the step`` (the child runs both libraries on one
  thread, never waiting for a busy core).  For minifb the ``tracemalloc`` peak of the
  step is given as well (NumPy reports its buffers to tracemalloc; PyTorch does not).
* Scaling table: W1 and W2 step time and peak memory for T = 1, 2, 4, 8, 16, 32
  (``--quick``: 1, 2, 4); linearity is judged on the best-of-N step times: the
  cost of one more timestep between consecutive T values must stay within 25%
  of the median of those costs (with only two: within 1.25x of each other; a
  median <= 0 cannot be judged); minifb's peak memory is judged by the same
  rule (and gets a least-squares line).  Each timed step's minor page faults
  (the whole process's, ``getrusage``; medians, both libraries) are in the
  JSON's rows and the scaling table, and the note names minifb's when they
  grow with T: a step that takes fresh pages from the system pays for each.
* On a GPU (CuPy present), the workloads also run on CuPy with the fused
  kernels on (``kernels.use("cuda")``) and off (``kernels.use("off")``).
* ``--hold-memory`` first calls ``minifb.memory.hold_freed_memory()`` (glibc):
  the process, both libraries in it, then keeps the memory it frees instead of
  taking it from the system again at each step.  By default the runner leaves
  the allocator as a user's process has it.  The JSON records which.

``--quick`` runs in under 2 minutes; ``--smoke`` is a seconds-long run with
small shapes used by the test suite (on 1 thread unless ``--threads`` says
otherwise; its rows are not judged against the targets, "smoke: not judged",
and its JSON's ``targets_met`` is null); the two exclude each other, except under ``--profile`` (``--smoke``:
small shapes, ``--quick``: 3 steps).  ``--only`` selects the cases of every table, the GPU's included.
The BLAS in use (threadpoolctl), ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE``
and the folder of the minifb measured (always the checkout this file sits in,
even when another minifb is installed) are recorded in the JSON.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import operator
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

try:
    import resource   # Unix: the page faults of each timed step
except ImportError:   # pragma: no cover - Windows
    resource = None

import numpy as np

HERE = Path(__file__).resolve().parent
# Time the checkout this file sits in, even when another minifb is installed: an A/B between two worktrees
# must measure two codes (the minifb measured is recorded in the JSON and the header line).
sys.path.insert(0, str(HERE.parent))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import minifb as mf  # noqa: E402
from minifb import functional as F  # noqa: E402
from minifb import backend, cpu_conv, nn, optim  # noqa: E402
from minifb.memory import hold_freed_memory  # noqa: E402

LR = 0.01

# steps: timed steps per case; warmup: untimed steps first; scaling_*: the T sweep
SETTINGS = {
    "full": {"steps": 20, "warmup": 3, "scaling_T": (1, 2, 4, 8, 16, 32), "scaling_steps": 7, "gemm_n": 2048,
             "budget_s": None},
    # quick: at most ~5 s of timed steps per case (at least 2 pairs), so it stays under 2 minutes even when
    # the shared machine is busy
    "quick": {"steps": 5, "warmup": 1, "scaling_T": (1, 2, 4), "scaling_steps": 3, "gemm_n": 1024,
              "budget_s": 5.0},
    "smoke": {"steps": 1, "warmup": 0, "scaling_T": (1, 2), "scaling_steps": 1, "gemm_n": 256, "budget_s": None},
}

# workload shapes; --smoke shrinks them
SHAPES = {
    "full": {"W1": {"batch": 64, "T": 8}, "W2": {"batch": 32, "T": 4}, "W3": {"batch": 32, "T": 32}},
    "smoke": {"W1": {"batch": 8, "T": 2}, "W2": {"batch": 2, "T": 2}, "W3": {"batch": 4, "T": 3}},
}

WORKLOADS = ("W1", "W2", "W3")
MICRO_CASES = ("conv2d", "conv_transpose2d", "matmul")
"""The case names: ``--profile`` takes one of them, ``--only`` a comma-separated list (``micro``: all three)."""

TARGETS = {"W1": 1.2, "W2": 1.5, "W3": 1.5, "conv2d": 1.5, "conv_transpose2d": 1.5, "matmul": 1.1}
MEMORY_TARGETS = {"W2": 1.5}


# ================================================================================ helpers
def _import_torch(threads: int = 2):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


_BLAS_LIMIT = None


def _limit_blas(threads: int) -> None:
    """Run NumPy's BLAS (needs threadpoolctl; without it the BLAS default stays) and minifb's compiled CPU
    convolution (:func:`minifb.cpu_conv.set_num_threads`) on ``threads`` threads."""
    global _BLAS_LIMIT
    cpu_conv.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    _BLAS_LIMIT = threadpool_limits(limits=threads, user_api="blas")


def _t(torch, a):
    """A PyTorch tensor (on the CPU) holding a copy of a minifb parameter / array on any device."""
    return torch.tensor(backend.to_numpy(a.data if hasattr(a, "data") else a))


def _last_step_loss_step(net, initial_state, x_np, y_np, T, device):
    """The minifb step of the feedback workloads (W1, W2): ``net`` wrapped in ``nn.Recur`` from
    ``initial_state``, T timesteps from the reset state, cross-entropy of the last step's logits,
    backprop through time, one SGD update (lr ``LR``) on ``device``.  Returns the step and the
    parameters it updates."""
    rnet = nn.Recur(net, initial_state)
    if device != "cpu":
        rnet.to(device)
    opt = optim.SGD(rnet.parameters(), lr=LR)
    x = mf.tensor(x_np, device=device)
    y = mf.tensor(y_np, device=device)

    def step():
        rnet.reset()
        for _ in range(T):
            logits = rnet(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.item())

    return step, opt.params


def _copy_linear(torch, tl, dense):
    with torch.no_grad():
        tl.weight.copy_(_t(torch, dense.weight))
        tl.bias.copy_(_t(torch, dense.bias))


def _linear_pairs(tl, layer):
    """The (minifb parameter, PyTorch parameter) pairs of a layer copied by :func:`_copy_linear`."""
    return [(layer.weight, tl.weight), (layer.bias, tl.bias)]


def _max_rel_error(ours, theirs) -> float:
    """The largest difference between each pair of arrays, relative to the PyTorch array's largest magnitude."""
    return max(float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30)) for a, b in zip(ours, theirs))


GRAD_RTOL = 1e-3
"""The workloads' gradients after the first step (same initial weights) must agree to this (relative, float32)."""


def _grad_agreement(pairs) -> float | None:
    """The largest relative difference (:func:`_max_rel_error`) between the gradients of each minifb parameter and
    of its PyTorch copy, as the last step left them; ``None`` without pairs, ``inf`` when a gradient is missing."""
    if not pairs:
        return None
    ours, theirs = [], []
    for p, tp in pairs:
        if p.grad is None or tp.grad is None:
            return float("inf")
        ours.append(np.asarray(backend.to_numpy(p.grad), dtype=np.float64))
        theirs.append(tp.grad.detach().cpu().numpy().astype(np.float64))
    return _max_rel_error(ours, theirs)


class Case:
    """One benchmark case: a minifb step, an optional PyTorch step, the matrix-product FLOPs the step
    needs (:func:`_flops`), and the minifb parameters its step updates (``params``; none for the micro
    cases, whose steps change nothing)."""

    def __init__(self, name, desc, mf_step, torch_step, flops, sync=None, params=(), agreement=None,
                 grad_pairs=()):
        self.name, self.desc = name, desc
        self.mf_step, self.torch_step, self.flops = mf_step, torch_step, flops
        self.sync = sync or (lambda: None)
        self.params = list(params)
        self.agreement = agreement   # micro cases: the largest relative difference from PyTorch (no loss)
        # workloads: (minifb parameter, the PyTorch parameter holding a copy of its initial values) pairs,
        # whose gradients after the first step must agree (GRAD_RTOL); empty without a PyTorch peer
        self.grad_pairs = list(grad_pairs)


def _flops(*layers) -> int:
    """The matrix-product FLOPs of one step, from ``(forward FLOPs of one call, calls, weight gradients,
    input gradients)`` per layer: each gradient product costs what the forward product does."""
    return sum(f * (calls + weight_grads + input_grads) for f, calls, weight_grads, input_grads in layers)


# ================================================================================ workloads
def _labels(rng, n, classes):
    return rng.integers(0, classes, size=n)


def build_w1(torch, batch=64, T=8, device="cpu"):
    """W1: dense feedback network (see the module docstring)."""
    mf.manual_seed(1)
    rng = np.random.default_rng(1)
    x_np = rng.standard_normal((batch, 784), dtype=np.float32)
    y_np = _labels(rng, batch, 10)
    net = nn.FeedbackChain(
        nn.Merger("s", nn.Dense(128, 784, mf.relu), operator.add),
        nn.Dense(784, 512, mf.relu),
        nn.Dense(512, 128, mf.relu),
        nn.Splitter("s"),
        nn.Dense(128, 10),
    )
    mf_step, mf_params = _last_step_loss_step(net, {"s": mf.zeros(batch, 128)}, x_np, y_np, T, device)

    torch_step = None
    grad_pairs = []
    if torch is not None:
        tn = torch.nn
        fb, l1, l2, l3 = tn.Linear(128, 784), tn.Linear(784, 512), tn.Linear(512, 128), tn.Linear(128, 10)
        for tl, dense in zip((fb, l1, l2, l3), (net.layers[0].op, net.layers[1], net.layers[2], net.layers[4])):
            _copy_linear(torch, tl, dense)
            tl.to(device)
            grad_pairs += _linear_pairs(tl, dense)
        params = [p for m in (fb, l1, l2, l3) for p in m.parameters()]
        topt = torch.optim.SGD(params, lr=LR)
        tx, ty = torch.from_numpy(x_np).to(device), torch.from_numpy(y_np).to(device)
        relu = torch.relu

        def torch_step():
            s = torch.zeros(batch, 128, device=device)
            for _ in range(T):
                a = tx + relu(fb(s))
                s = relu(l2(relu(l1(a))))
                logits = l3(s)
            loss = torch.nn.functional.cross_entropy(logits, ty)
            topt.zero_grad()
            loss.backward()
            topt.step()
            return float(loss.item())

    # the loss reads the last step's logits only, and s0 is a constant: no input gradient for fb at t = 1
    flops = _flops((2 * batch * 128 * 784, T, T, T - 1),     # fb
                   (2 * batch * 784 * 512, T, T, T),         # l1
                   (2 * batch * 512 * 128, T, T, T),         # l2
                   (2 * batch * 128 * 10, T, 1, 1))          # l3
    return Case("W1", f"dense feedback B={batch} T={T}", mf_step, torch_step, flops, params=mf_params,
                grad_pairs=grad_pairs)


def build_w2(torch, batch=32, T=4, device="cpu"):
    """W2: convolutional feedback network (see the module docstring)."""
    mf.manual_seed(2)
    rng = np.random.default_rng(2)
    x_np = rng.standard_normal((batch, 1, 28, 28), dtype=np.float32)
    y_np = _labels(rng, batch, 10)
    net = nn.FeedbackChain(
        nn.Conv(1, 32, 3, mf.relu, padding=1),
        nn.Merger("s2", nn.ConvTranspose(64, 32, 4, stride=2, padding=1), operator.add),
        nn.Conv(32, 64, 3, mf.relu, stride=2, padding=1),
        nn.Splitter("s2"),
        nn.Conv(64, 64, 3, mf.relu, stride=2, padding=1),
        nn.Flatten(),
        nn.Dense(3136, 10),
    )
    mf_step, mf_params = _last_step_loss_step(net, {"s2": mf.zeros(batch, 64, 14, 14)}, x_np, y_np, T, device)

    torch_step = None
    grad_pairs = []
    if torch is not None:
        tn = torch.nn
        c1 = tn.Conv2d(1, 32, 3, padding=1)
        ct = tn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
        c2 = tn.Conv2d(32, 64, 3, stride=2, padding=1)
        c3 = tn.Conv2d(64, 64, 3, stride=2, padding=1)
        d = tn.Linear(3136, 10)
        ours = (net.layers[0], net.layers[1].op, net.layers[2], net.layers[4], net.layers[6])
        for tl, layer in zip((c1, ct, c2, c3, d), ours):
            _copy_linear(torch, tl, layer)
            tl.to(device)
            grad_pairs += _linear_pairs(tl, layer)
        params = [p for m in (c1, ct, c2, c3, d) for p in m.parameters()]
        topt = torch.optim.SGD(params, lr=LR)
        tx, ty = torch.from_numpy(x_np).to(device), torch.from_numpy(y_np).to(device)
        relu = torch.relu

        def torch_step():
            s = torch.zeros(batch, 64, 14, 14, device=device)
            for _ in range(T):
                a1 = relu(c1(tx)) + ct(s)
                s = relu(c2(a1))
                logits = d(relu(c3(s)).flatten(1))
            loss = torch.nn.functional.cross_entropy(logits, ty)
            topt.zero_grad()
            loss.backward()
            topt.step()
            return float(loss.item())

    # last-step loss; x and s0 are constants: conv1 needs no input gradient, convT none at t = 1
    flops = _flops((2 * batch * 32 * 28 * 28 * 1 * 9, T, T, 0),         # conv1
                   (2 * batch * 64 * 14 * 14 * 32 * 16, T, T, T - 1),   # convT (input pixels x C_in x C_out x k^2)
                   (2 * batch * 64 * 14 * 14 * 32 * 9, T, T, T),        # conv2
                   (2 * batch * 64 * 7 * 7 * 64 * 9, T, 1, 1),          # conv3
                   (2 * batch * 3136 * 10, T, 1, 1))                    # dense
    return Case("W2", f"conv feedback B={batch} T={T}", mf_step, torch_step, flops, params=mf_params,
                grad_pairs=grad_pairs)


def build_w3(torch, batch=32, T=32, device="cpu", vocab=64, hidden=256):
    """W3: LSTM language-model step over a one-hot sequence."""
    mf.manual_seed(3)
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, vocab, size=(T + 1, batch))
    onehot = np.eye(vocab, dtype=np.float32)[tokens[:-1]]           # (T, B, V)
    targets = tokens[1:]                                            # (T, B)
    cell = nn.LSTMCell(vocab, hidden)
    head = nn.Dense(hidden, vocab)
    zeros = mf.zeros(batch, hidden)
    rnet = nn.Recur(cell, (zeros, mf.zeros(batch, hidden)))
    if device != "cpu":
        rnet.to(device)
        head.to(device)
    opt = optim.SGD(rnet.parameters() + head.parameters(), lr=LR)
    xs = [mf.tensor(onehot[t], device=device) for t in range(T)]
    ys = [mf.tensor(targets[t], device=device) for t in range(T)]

    def mf_step():
        rnet.reset()
        total = None
        for t in range(T):
            loss_t = F.cross_entropy(head(rnet(xs[t])), ys[t])
            total = loss_t if total is None else total + loss_t
        loss = total * (1.0 / T)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.item())

    torch_step = None
    grad_pairs = []
    if torch is not None:
        tcell = torch.nn.LSTMCell(vocab, hidden)
        thead = torch.nn.Linear(hidden, vocab)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(tcell, name).copy_(_t(torch, getattr(cell, name)))
        _copy_linear(torch, thead, head)
        tcell.to(device)
        thead.to(device)
        grad_pairs = [(getattr(cell, n), getattr(tcell, n)) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        grad_pairs += _linear_pairs(thead, head)
        topt = torch.optim.SGD(list(tcell.parameters()) + list(thead.parameters()), lr=LR)
        txs = [torch.from_numpy(onehot[t]).to(device) for t in range(T)]
        tys = [torch.from_numpy(targets[t]).to(device) for t in range(T)]
        ce = torch.nn.functional.cross_entropy

        def torch_step():
            h = torch.zeros(batch, hidden, device=device)
            c = torch.zeros(batch, hidden, device=device)
            total = None
            for t in range(T):
                h, c = tcell(txs[t], (h, c))
                loss_t = ce(thead(h), tys[t])
                total = loss_t if total is None else total + loss_t
            loss = total * (1.0 / T)
            topt.zero_grad()
            loss.backward()
            topt.step()
            return float(loss.item())

    # a loss at every step; h0 is a constant and the one-hot x needs no gradient
    flops = _flops((2 * batch * vocab * 4 * hidden, T, T, 0),           # W_ih
                   (2 * batch * hidden * 4 * hidden, T, T, T - 1),      # W_hh
                   (2 * batch * hidden * vocab, T, T, T))               # head
    return Case("W3", f"LSTM V={vocab} H={hidden} T={T} B={batch}", mf_step, torch_step, flops,
                params=opt.params, grad_pairs=grad_pairs)


def _shrink(name, arrays):
    """Small versions of the micro cases' arrays (for ``--smoke``): same ops, tiny shapes."""
    if name == "matmul":
        return [a[:64, :64].copy() for a in arrays], "64x64 @ 64x64"
    x, w, b = arrays
    if name == "conv2d":
        return [x[:2, :8, :10, :10].copy(), w[:8, :8].copy(), b[:8].copy()], "N=2 C=8 10x10 K=8 3x3 pad 1"
    return [x[:2, :8, :5, :5].copy(), w[:8, :4].copy(), b[:4].copy()], "N=2 8->4 5x5->10x10 k4 s2 p1"


def build_micro(torch, device="cpu", small=False):
    """W4: the micro cases of ``bench_micro.py`` (its cases and step functions reused), one Case each."""
    import bench_micro  # benchmarks/bench_micro.py, owned by the conv author

    rng = np.random.default_rng(0)
    cases = []
    for name, shape, fn, torch_name, arrays, options in bench_micro._cases(rng):
        if small:
            arrays, shape = _shrink(name, arrays)
        host = arrays
        if device != "cpu":
            arrays = [backend.to_device(a, device) for a in arrays]
        with mf.no_grad():
            out_shape = fn(*[mf.Tensor(a) for a in arrays], **options).shape
        grad_out = rng.standard_normal(out_shape, dtype=np.float32)
        if device != "cpu":
            grad_out = backend.to_device(grad_out, device)
        mf_step = bench_micro._minifb_step(fn, arrays, options, grad_out)
        torch_step = None
        if torch is not None:
            torch_step = bench_micro._torch_step(torch, torch_name, host, options,
                                                 backend.to_numpy(grad_out), device=device)
        if name == "matmul":
            fwd = 2 * arrays[0].shape[0] * arrays[0].shape[1] * arrays[1].shape[1]
        elif name == "conv2d":
            w = arrays[1]
            fwd = 2 * out_shape[0] * out_shape[2] * out_shape[3] * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]
        else:  # conv_transpose2d: input pixels x C_in x C_out x k^2
            x, w = arrays[0], arrays[1]
            fwd = 2 * x.shape[0] * x.shape[2] * x.shape[3] * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]
        agreement = None if torch is None else _micro_agreement(torch, fn, torch_name, host, options,
                                                                backend.to_numpy(grad_out))
        cases.append(Case(name, shape, mf_step, torch_step, _flops((fwd, 1, 1, 1)), agreement=agreement))
    return cases


def _micro_agreement(torch, fn, torch_name, arrays, options, grad_out) -> float:
    """The largest difference between minifb's and PyTorch's output and input gradients of a micro case,
    relative to each array's largest magnitude (on the CPU): the micro cases' check that both libraries
    compute the same thing, as the first loss is the workloads'."""
    ts = [mf.Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts, **options)
    out.backward(grad_out)
    op = torch.matmul if torch_name == "matmul" else getattr(torch.nn.functional, torch_name)
    tts = [torch.from_numpy(a).requires_grad_(True) for a in arrays]
    tout = op(*tts, **options)
    tout.backward(torch.from_numpy(grad_out))
    ours = [out.numpy()] + [t.grad for t in ts]
    theirs = [tout.detach().numpy()] + [t.grad.numpy() for t in tts]
    return _max_rel_error(ours, theirs)


def build(name, torch, mode, T=None, device="cpu"):
    """Build the named case (``W1``, ``W2``, ``W3``) at this mode's shapes, optionally with another T."""
    shapes = dict(SHAPES["smoke" if mode == "smoke" else "full"][name])
    if T is not None:
        shapes["T"] = T
    fn = {"W1": build_w1, "W2": build_w2, "W3": build_w3}[name]
    return fn(torch, device=device, **shapes)


# ================================================================================ measuring
# Pause before each timed step so that neither library's idle worker threads are still spinning from its
# previous step: OpenBLAS's workers busy-wait about 0.1 s (2^28 cycles) after a call, so without it every
# PyTorch step that follows a minifb step starts with one of the two cores taken, which made PyTorch look
# up to 2x slower than it is (benchmarks/NOTES.md, "Settle").  --smoke sets it to 0; the environment
# variable MINIFB_BENCH_SETTLE_S overrides it.
SETTLE_S = float(os.environ.get("MINIFB_BENCH_SETTLE_S", "0.15"))


def _settle(settle_s):
    gc.collect()
    if settle_s > 0:
        time.sleep(settle_s)


def _minor_faults():
    """The process's minor page faults so far (each a page the system had to find and zero, or map, for it),
    or None where ``resource`` is missing."""
    return None if resource is None else resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _run_step(step, settle_s):
    """Call ``step`` (after a collection and a pause of ``settle_s``, see ``SETTLE_S``); return seconds."""
    _settle(settle_s)
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def time_case(case: Case, steps: int, warmup: int, budget_s: float | None = None,
              settle_s: float = SETTLE_S) -> dict:
    """Median step times of minifb and PyTorch, alternating (mf, pt, pt, mf, ...).

    With ``budget_s``, stop after the pair that passes that many seconds (at least 2 pairs; pauses not
    counted).  Before each timed step: a garbage collection and a pause of ``settle_s`` seconds.
    """
    first_mf = case.mf_step()
    case.sync()
    first_pt = case.torch_step() if case.torch_step else None
    # both steps started from the same weights: their gradients, still in place after the update, must agree
    grad_error = _grad_agreement(case.grad_pairs) if case.torch_step else None
    for _ in range(max(warmup - 1, 0)):
        case.mf_step()
        if case.torch_step:
            case.torch_step()
    mine, theirs = [], []
    faults = ([], [])   # minor page faults of each timed step: minifb's, PyTorch's (all threads of the process)
    mf_step_synced = _synced(case.mf_step, case.sync)
    for i in range(steps):
        if budget_s is not None and i >= 2 and sum(mine) + sum(theirs) > budget_s:
            break
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for who in order:
            if who == 1 and not case.torch_step:
                continue
            before = _minor_faults()
            if who == 0:
                mine.append(_run_step(mf_step_synced, settle_s))
            else:
                theirs.append(_run_step(case.torch_step, settle_s))
            if before is not None:
                faults[who].append(_minor_faults() - before)
    row = {"name": case.name, "desc": case.desc, "flops": case.flops, "steps": len(mine),
           "minifb_s": statistics.median(mine), "minifb_all_s": mine,
           "torch_s": statistics.median(theirs) if theirs else None}
    row["ratio"] = row["minifb_s"] / row["torch_s"] if row["torch_s"] else None
    # median of the ratios of neighbouring steps: robust to the machine's load drifting during the run
    row["ratio_paired"] = statistics.median(m / t for m, t in zip(mine, theirs)) if theirs else None
    row["torch_all_s"] = theirs
    # medians; a step that needs fresh memory from the system pays for each page (see linearity_note)
    row["minifb_faults"] = int(statistics.median(faults[0])) if faults[0] else None
    row["torch_faults"] = int(statistics.median(faults[1])) if faults[1] else None
    # best-of-N: the step least disturbed by other processes (this machine is shared)
    row["minifb_best_s"] = min(mine)
    row["torch_best_s"] = min(theirs) if theirs else None
    row["ratio_best"] = min(mine) / min(theirs) if theirs else None
    if first_mf is not None and first_pt is not None and isinstance(first_mf, float):
        row["first_loss_minifb"], row["first_loss_torch"] = first_mf, first_pt
        row["loss_match"] = abs(first_mf - first_pt) <= 1e-4 * max(1.0, abs(first_pt))
    if grad_error is not None:
        row["grad_max_rel_error"] = grad_error
        row["grad_match"] = grad_error <= GRAD_RTOL
        row["loss_match"] = row.get("loss_match", True) and row["grad_match"]
    if case.agreement is not None:
        row["max_rel_error"] = case.agreement
        row["loss_match"] = case.agreement <= 1e-4
    row["noisy"] = noise(row) is not None
    return row


NOISE_RATIO_GAP = 0.25
"""A row is noisy when its paired and best-step ratios differ by more than this fraction of the larger."""
NOISE_SPREAD = 2.0
"""... or when either library's slowest timed step is more than this many times its fastest."""


def noise(row) -> str | None:
    """Why the row's timings are too unsteady to judge against a target (``None``: steady enough, or no
    PyTorch peer): its paired and best-step ratios disagree (``NOISE_RATIO_GAP``), or a library's step
    times spread too widely (``NOISE_SPREAD``)."""
    if row.get("ratio_paired") is None:
        return None
    paired, best = row["ratio_paired"], row["ratio_best"]
    if abs(paired - best) > NOISE_RATIO_GAP * max(paired, best):
        return f"paired {paired:.2f}x vs best {best:.2f}x"
    for lib, key in (("minifb", "minifb_all_s"), ("PyTorch", "torch_all_s")):
        spread = max(row[key]) / min(row[key])
        if spread > NOISE_SPREAD:
            return f"{lib}'s steps spread {spread:.1f}x"
    return None


def verdict(row) -> str | None:
    """The row against its target: "ok", "MISS", "NOISY" (see :func:`noise`) or "LOSS MISMATCH" (the
    first losses differ, or a micro case's output or gradients do: the two libraries did not compute
    the same step); ``None`` without a target or a PyTorch time.  Only "ok" counts as the target met."""
    target = TARGETS.get(row["name"])
    if target is None or row.get("ratio_paired") is None:
        return None
    if row.get("loss_match") is False:
        return "LOSS MISMATCH"
    if row.get("noisy"):
        return "NOISY"
    return "ok" if row["ratio_paired"] <= target else "MISS"


def gemm_rate(torch, n: int, settle_s: float = SETTLE_S) -> dict:
    """The machine's float32 GEMM rate (GFLOP/s): the better of NumPy's and PyTorch's best n^3 matmul,
    each measured after a pause of ``settle_s`` (see ``SETTLE_S``)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2 * n ** 3
    reps = 7 if n >= 1024 else 20

    def rate(fn):
        _settle(settle_s)  # else PyTorch shares the cores with OpenBLAS's threads still spinning after NumPy's
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return flops / min(times) / 1e9  # best of: the rate the machine can reach

    out = {"n": n, "numpy_gflops": rate(lambda: a @ b)}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        out["torch_gflops"] = rate(lambda: ta @ tb)
    out["peak_gflops"] = max(v for k, v in out.items() if k.endswith("_gflops"))
    return out


def _conv_path(env) -> str:
    """How minifb's CPU convolutions ran, for the table's header."""
    if env.get("compiled_conv"):
        return f"compiled (minifb.cpu_conv, {env['compiled_conv_threads']} thread(s))"
    return "NumPy im2col (minifb.cpu_conv unavailable or off)"


def environment() -> dict:
    """What the numbers depend on: CPU, BLAS (threadpoolctl), OpenBLAS variables, versions."""
    info = {"python": platform.python_version(), "numpy": np.__version__, "cores": os.cpu_count(),
            "platform": platform.platform(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: d.get(k) for k in ("internal_api", "prefix", "architecture", "version", "num_threads")}
                        for d in threadpool_info()]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    info["compiled_conv"] = cpu_conv.enabled()
    info["compiled_conv_threads"] = cpu_conv.get_num_threads() if info["compiled_conv"] else None
    try:
        import torch

        info["torch"], info["torch_threads"] = torch.__version__, torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    return info


# ---- peak memory, in a child process -------------------------------------------------------------
def _status_kb(field):
    m = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(m.group(1)) if m else None


def _peak_rss_delta(step):
    """Bytes the resident set grows by at the peak of ``step()`` (Linux: VmHWM after clear_refs=5)."""
    gc.collect()
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    step()
    return (_status_kb("VmHWM") - before) * 1024


def _tracemalloc_peak(step):
    gc.collect()
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def memory_child(spec: dict) -> dict:
    """Run in the child: peak memory of each requested case, both libraries."""
    torch = _import_torch(1)  # peak memory does not depend on it; one thread never waits for a busy core
    _limit_blas(1)
    gc.freeze()  # the import's objects: later collections need not walk them
    results = {}
    repeats = 2 if spec["mode"] == "full" else 1
    for key, (name, T) in spec["cases"].items():
        if name in ("W1", "W2", "W3"):
            case = build(name, torch, spec["mode"], T=T)
        else:
            case = next(c for c in build_micro(torch, small=spec["mode"] == "smoke") if c.name == name)
        out = {}
        for lib, step in (("minifb", case.mf_step), ("torch", case.torch_step)):
            if step is None:
                continue
            step()  # warm-up: weights' gradients, optimiser state and BLAS buffers exist from now on
            out[f"{lib}_peak_rss"] = min(_peak_rss_delta(step) for _ in range(repeats))
        out["minifb_tracemalloc"] = _tracemalloc_peak(case.mf_step)
        results[key] = out
        del case
        gc.collect()
    return results


def measure_memory(cases: dict, mode: str, threads: int) -> dict:
    """Start the memory child (fixed mmap threshold) and return its results, or an error entry."""
    if not Path("/proc/self/clear_refs").exists():
        return {"error": "peak RSS needs Linux /proc (clear_refs)"}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="4096")
    spec = json.dumps({"cases": cases, "mode": mode, "threads": threads})
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-child", spec],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "memory child failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- GPU ----------------------------------------------------------------------------------------
def _torch_cuda(torch):
    """PyTorch when it can use the GPU, in strict float32 (no TF32, which CuPy does not use), else None."""
    if torch is None or not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def _wanted(name: str, only: set) -> bool:
    """Whether ``--only`` (empty: everything) selects the case ``name``; ``micro`` selects every micro case."""
    return not only or name in only or (name in MICRO_CASES and "micro" in only)


def gpu_section(mode: str, steps: int, warmup: int, torch=None, only: set = frozenset()) -> dict:
    """The workloads on CuPy, fused kernels on and off, and PyTorch's CUDA eager mode as the peer when
    it is importable with a GPU; skipped without a GPU.  ``only`` selects the cases as ``--only`` does.

    Each step ends with a device synchronisation, so the times are wall-clock times of whole steps,
    launch overhead included (what a user's training loop sees). PyTorch's steps are interleaved in both
    rounds alike, so that the fused and the unfused round run under the same conditions: the steps are
    host-bound, and PyTorch's host work between two minifb steps changes what is left in the CPU caches.
    """
    from minifb import kernels

    if not backend.cuda_available():
        return {"skipped": "no CuPy with a GPU"}
    cp = backend.cupy_or_none()
    torch = _torch_cuda(torch)
    rows = []
    names = [n for n in WORKLOADS if _wanted(n, only)]
    if any(_wanted(n, only) for n in MICRO_CASES):
        names.append("micro")
    for name in names:
        timings = {}
        for kmode in ("cuda", "off"):
            with kernels.use(kmode):
                if name == "micro":
                    cases = [c for c in build_micro(torch, device="cuda", small=mode == "smoke")
                             if _wanted(c.name, only)]
                else:
                    cases = [build(name, torch, mode, device="cuda")]
                for case in cases:
                    case.sync = cp.cuda.Device().synchronize
                    if case.torch_step is not None:
                        case.torch_step = _synced(case.torch_step, torch.cuda.synchronize)
                    r = time_case(case, steps, warmup, settle_s=0.0)
                    row = timings.setdefault(case.name, {"name": case.name, "desc": case.desc, "flops": case.flops})
                    row[f"{'fused' if kmode == 'cuda' else 'unfused'}_s"] = r["minifb_s"]
                    row[f"torch_s_{kmode}_round"] = r["torch_s"]
                    if kmode == "cuda":
                        row["torch_s"], row["loss_match"] = r["torch_s"], r.get("loss_match")
        for row in timings.values():
            row["fused_speedup"] = row["unfused_s"] / row["fused_s"]
            row["ratio"] = row["fused_s"] / row["torch_s"] if row.get("torch_s") else None
            rows.append(row)
    return {"device": cp.cuda.runtime.getDeviceProperties(0)["name"].decode(),
            "torch": None if torch is None else torch.__version__, "rows": rows}


def _synced(step, sync):
    """``step`` followed by a device synchronisation; returns the step's result."""
    def run():
        out = step()
        sync()
        return out
    return run


def markdown_gpu(gpu) -> str:
    """The GPU table: fused and unfused minifb, and PyTorch CUDA eager where it ran."""
    lines = [f"device: {gpu['device']}; PyTorch {gpu['torch'] or 'not available with CUDA'}", "",
             "| case | shape | minifb fused ms | minifb unfused ms | fused speedup | PyTorch CUDA ms "
             "| fused / PyTorch | first loss equal |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in gpu["rows"]:
        ratio = "n/a" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
        match = {None: "n/a", True: "yes", False: "NO"}[r.get("loss_match")]
        lines.append(f"| {r['name']} | {r['desc']} | {_ms(r['fused_s'])} | {_ms(r['unfused_s'])} | "
                     f"{r['fused_speedup']:.2f}x | {_ms(r.get('torch_s'))} | {ratio} | {match} |")
    return "\n".join(lines)


# ================================================================================ reporting
def _mib(b):
    return "n/a" if b is None else f"{b / 2 ** 20:.1f}"


def _ms(s):
    return "n/a" if s is None else f"{s * 1e3:.1f}"


def _count(n):
    return "n/a" if n is None else f"{n:,}"


def _ratio_text(ratio: float, target: float | None) -> str:
    """``ratio`` to 2 decimals, or to 4 when 2 would round it onto its target (1.1001 reads "1.10", a MISS)."""
    text = f"{ratio:.2f}"
    return f"{ratio:.4f}" if target is not None and float(text) == target and ratio != target else text


NOT_JUDGED = "smoke: not judged"
"""The verdict of every row under ``--smoke``: its tiny shapes say nothing about the targets."""


def _row_verdict(row, judged=True):
    """:func:`verdict`, or ``NOT_JUDGED`` in place of any verdict when ``judged`` is false (``--smoke``)."""
    v = verdict(row)
    return v if judged or v is None else NOT_JUDGED


def annotate(row, peak_gflops, judged=True) -> dict:
    """Add to a main-table row what the table shows of it: GFLOP/s, minifb's % of the GEMM rate, its verdict
    (``judged`` false: ``NOT_JUDGED``) and why it is NOISY (``None``: steady)."""
    row["minifb_gflops"] = row["flops"] / row["minifb_s"] / 1e9
    row["torch_gflops"] = None if not row.get("torch_s") else row["flops"] / row["torch_s"] / 1e9
    row["minifb_gemm_percent"] = 100 * row["minifb_gflops"] / peak_gflops
    row["verdict"] = _row_verdict(row, judged)
    row["noisy_reason"] = noise(row)
    return row


def _finite_or_none(obj):
    """``obj`` with every NaN / infinite float (NumPy's included) replaced by ``None`` and NumPy scalars made
    Python ones: what strict JSON (``allow_nan=False``) can hold."""
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json(path, result) -> None:
    """Write ``result`` as strict JSON (no NaN / Infinity, which many parsers reject): non-finite numbers as null."""
    Path(path).write_text(json.dumps(_finite_or_none(result), indent=1, allow_nan=False, default=float))


def markdown_main(rows, gemm, judged=True) -> str:
    """The main table; ``judged`` false (``--smoke``): no row is set against its target (``NOT_JUDGED``)."""
    peak = gemm["peak_gflops"]
    torch_rate = gemm.get("torch_gflops")
    lines = [f"float32 GEMM rate of this machine: {peak:.1f} GFLOP/s "
             f"(NumPy {gemm['numpy_gflops']:.1f}, PyTorch {'n/a' if torch_rate is None else f'{torch_rate:.1f}'}; "
             f"{gemm['n']}^3)", "",
             "| case | shape | minifb ms | PyTorch ms | minifb/PyTorch: paired (medians, best) | target | minifb GFLOP/s (% of GEMM) "
             "| PyTorch GFLOP/s | minifb peak MiB (RSS / tracemalloc) | PyTorch peak MiB (RSS) | mem ratio "
             "| first loss (and gradients) equal |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        target = TARGETS.get(r["name"])
        ratio = "n/a" if r["ratio"] is None else \
            f"**{_ratio_text(r['ratio_paired'], target)}x** ({r['ratio']:.2f}x, {r['ratio_best']:.2f}x)"
        mark = "" if verdict(r) is None else f" {_row_verdict(r, judged)}"
        g_mf = r["flops"] / r["minifb_s"] / 1e9
        g_pt = "n/a" if r["torch_s"] is None else f"{r['flops'] / r['torch_s'] / 1e9:.1f}"
        mem = r.get("memory", {})
        mem_ratio = r.get("memory_ratio")
        mr = "n/a" if mem_ratio is None else f"{mem_ratio:.2f}x"
        if r["name"] in MEMORY_TARGETS and mem_ratio is not None:
            mr += (" ok" if mem_ratio <= MEMORY_TARGETS[r["name"]] else " MISS") if judged else f" {NOT_JUDGED}"
        loss = r.get("loss_match")
        if "max_rel_error" in r:   # a micro case: its output and gradients against PyTorch's
            loss_s = f"{'yes' if loss else 'NO'} (output, gradients within {r['max_rel_error']:.0e})"
        else:
            loss_s = "n/a" if loss is None else (f"yes ({r['first_loss_minifb']:.5f})" if loss else
                                                  f"NO ({r['first_loss_minifb']:.6f} vs {r['first_loss_torch']:.6f})")
            if r.get("grad_max_rel_error") is not None:   # the workloads: the first step's gradients too
                loss_s += (f"; gradients within {r['grad_max_rel_error']:.0e}" if r["grad_match"] else
                           f"; gradients NO (off by {r['grad_max_rel_error']:.0e} > {GRAD_RTOL:.0e})")
        lines.append(f"| {r['name']} | {r['desc']} | {_ms(r['minifb_s'])} | {_ms(r['torch_s'])} | {ratio}{mark} | "
                     f"{'' if target is None else f'<= {target}x'} | {g_mf:.1f} ({100 * g_mf / peak:.0f}%) | {g_pt} | "
                     f"{_mib(mem.get('minifb_peak_rss'))} / {_mib(mem.get('minifb_tracemalloc'))} | "
                     f"{_mib(mem.get('torch_peak_rss'))} | {mr} | {loss_s} |")
    noisy = [f"{r['name']} ({noise(r)})" for r in rows if r.get("noisy")]
    if noisy and judged:
        lines += ["", f"NOISY: {', '.join(noisy)}: the timings are too unsteady to judge against the target "
                      "(counted as not met); rerun these cases (--only), on a quieter machine."]
    return "\n".join(lines)


def markdown_scaling(scaling) -> str:
    lines = ["| case | T | minifb ms (median / best) | PyTorch ms (median / best) | ratio (paired) "
             "| minifb best ms / T | minifb peak MiB (RSS) | PyTorch peak MiB (RSS) "
             "| page faults per step (minifb / PyTorch) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, entry in scaling.items():
        for r in entry["rows"]:
            ratio = "n/a" if r["ratio"] is None else f"{r['ratio_paired']:.2f}x"
            mem = r.get("memory", {})
            lines.append(f"| {name} | {r['T']} | {_ms(r['minifb_s'])} / {_ms(r['minifb_best_s'])} | "
                         f"{_ms(r['torch_s'])} / {_ms(r['torch_best_s'])} | {ratio} | "
                         f"{r['minifb_best_s'] / r['T'] * 1e3:.2f} | {_mib(mem.get('minifb_peak_rss'))} | "
                         f"{_mib(mem.get('torch_peak_rss'))} | {_count(r.get('minifb_faults'))} / "
                         f"{_count(r.get('torch_faults'))} |")
    notes = [f"- {name}: {entry['note']}" for name, entry in scaling.items()]
    return "\n".join(lines + [""] + notes)


def _marginal(times, Ts):
    """Cost of one more timestep between consecutive T values: (t(T2) - t(T1)) / (T2 - T1)."""
    return np.diff(np.asarray(times, dtype=float)) / np.diff(Ts)


LINEAR_TOLERANCE = 0.25
"""A cost per added timestep may differ this much from the median of them (or, with two, from the other one)."""


def _off_line(marg):
    """Judge costs per added timestep (:func:`_marginal`): ``(None, deviations, indices off the line)``, or
    ``(reason, None, [])`` when they cannot be judged.  Each is set against the median of them; with only two
    (``--quick``: T = 1, 2, 4) the median is their mean and could never be 25% off, so the second is set against
    the first instead (off when the larger is more than 1.25x the smaller).  A median (or, with two, either
    cost) <= 0 is noise, not a cost: it cannot be judged, rather than giving sign-flipped percentages."""
    marg = np.asarray(marg, dtype=float)
    if not np.all(np.isfinite(marg)):
        return "cannot judge (a cost is not a number)", None, []
    if len(marg) == 2:
        if marg.min() <= 0:
            return "cannot judge (an added-timestep cost <= 0: noise)", None, []
        dev = np.array([0.0, marg[1] / marg[0] - 1])
        return None, dev, [1] if marg.max() / marg.min() > 1 + LINEAR_TOLERANCE else []
    med = float(np.median(marg))
    if med <= 0:
        return "cannot judge (median added-timestep cost <= 0: noise)", None, []
    dev = marg / med - 1
    return None, dev, [i for i in range(len(marg)) if abs(dev[i]) > LINEAR_TOLERANCE]


def linearity_note(rows) -> str:
    """Say whether the step cost, and the step's peak memory, grow linearly in T.

    Judged on the best-of-N step times (on a shared machine the medians carry the other processes'
    load): the cost of one more timestep, measured between consecutive T values, must stay within
    25% of its median (with only two such costs: within 1.25x of each other; a median <= 0 cannot be
    judged).  An interval where PyTorch's marginal cost jumps the same way (also beyond
    25%, and by at least half as much as minifb's) is reported as shared with PyTorch (machine load,
    or the workload itself: W1's gradients reach float32's subnormal range at T = 32, which slows both
    libraries' arithmetic; benchmarks/NOTES.md).  minifb's peak memory (RSS) is judged by the same
    rule, where it was measured.  When minifb's steps take many more page faults at large T than at small
    (:data:`FAULTS_NOTABLE`), the note says so: fresh memory from the system costs time per page.
    """
    Ts = np.array([r["T"] for r in rows], dtype=float)
    if len(Ts) < 3:
        return "too few T values to judge linearity"
    marg = _marginal([r["minifb_best_s"] for r in rows], Ts)
    reason, dev, off = _off_line(marg)
    spans = [f"{int(Ts[i])}->{int(Ts[i + 1])}" for i in range(len(marg))]
    rule = "each within 25% of the median" if len(marg) > 2 else "within 1.25x of each other"
    text = (f"minifb ms per added timestep {', '.join(f'{m * 1e3:.1f}' for m in marg)} "
            f"(T {', '.join(spans)}): ")
    if reason:
        text += reason
    elif not off:
        text += f"linear in T ({rule})"
    else:
        pt = [r.get("torch_best_s") for r in rows]
        load = []
        if all(p is not None for p in pt):
            preason, pdev, _ = _off_line(_marginal(pt, Ts))
            if preason is None:
                load = [i for i in off if abs(pdev[i]) > LINEAR_TOLERANCE and abs(pdev[i]) >= 0.5 * abs(dev[i])
                        and np.sign(pdev[i]) == np.sign(dev[i])]
        own = [i for i in off if i not in load]
        parts = []
        if own:
            parts.append("NOT linear: " + ", ".join(f"T {spans[i]} {100 * dev[i]:+.0f}%" for i in own))
        if load:
            parts.append(", ".join(f"T {spans[i]}" for i in load)
                         + " off the line for PyTorch too (shared cause: machine load or the workload's numbers, "
                         "e.g. subnormal gradients)")
        text += "; ".join(parts)
    mems = [r.get("memory", {}).get("minifb_peak_rss") for r in rows]
    if all(m is not None for m in mems):
        mems = np.array(mems, dtype=float)
        mb, ma = np.polyfit(Ts, mems, 1)
        mmarg = _marginal(mems, Ts)
        mreason, mdev, moff = _off_line(mmarg)
        text += (f"; peak memory ~ {ma / 2 ** 20:.1f} MiB + {mb / 2 ** 20:.2f} MiB x T, MiB per added timestep "
                 f"{', '.join(f'{m / 2 ** 20:.2f}' for m in mmarg)}: ")
        if mreason:
            text += f"memory {mreason}"
        elif moff:
            text += "memory NOT linear: " + ", ".join(f"T {spans[i]} {100 * mdev[i]:+.0f}%" for i in moff)
        else:
            text += f"memory linear in T ({rule})"
    faults = [r.get("minifb_faults") for r in rows]
    if all(f is not None for f in faults) and faults[-1] >= FAULTS_NOTABLE and faults[-1] >= 10 * max(1, faults[0]):
        theirs = [r.get("torch_faults") for r in rows]
        peer = f" (PyTorch's: {', '.join(_count(f) for f in theirs)})" if all(f is not None for f in theirs) else ""
        text += (f"; minifb's page faults per step grow to {_count(faults[-1])} at T = {int(Ts[-1])} "
                 f"({', '.join(_count(f) for f in faults)}){peer}: its larger steps take fresh memory from the "
                 "system (--hold-memory, minifb.memory.hold_freed_memory; benchmarks/NOTES.md, \"Session 18\")")
    return text


FAULTS_NOTABLE = 1000
""":func:`linearity_note` names minifb's page faults when its step at the largest T takes at least this many (and at
least 10x its step at the smallest T): each is a page the system must find and zero, a microsecond or more."""


def profile(name: str, mode: str, steps: int, top: int = 25, device: str = "cpu",
            profiler: str = "auto") -> None:
    """Profile ``steps`` minifb steps of one case on ``device`` and print where the time goes.

    Args:
        profiler: ``"pyinstrument"`` (a sampling profiler: the call tree by wall-clock time, native BLAS and
            copy time charged to the Python line that called it), ``"cprofile"`` (the standard library's
            deterministic profiler: the top ``top`` functions by own time), ``"none"`` (the steps alone, for a
            sampler outside the process: ``py-spy record --native -- python benchmarks/run.py --profile W2
            --profiler none`` also sees into BLAS and NumPy's C loops), or ``"auto"``: pyinstrument when it is
            installed (``pip install pyinstrument``), else cProfile.

    On ``"cuda"`` each step ends with a device synchronisation; ``MINIFB_KERNELS`` picks the kernels.
    """
    if profiler == "auto":
        profiler = "pyinstrument" if importlib.util.find_spec("pyinstrument") else "cprofile"
    if name in WORKLOADS:
        case = build(name, None, mode, device=device)
    else:
        case = next(c for c in build_micro(None, device=device, small=mode == "smoke") if c.name == name)
    sync = backend.cupy_or_none().cuda.Device().synchronize if device == "cuda" else (lambda: None)
    case.mf_step()  # warm-up
    sync()

    def steps_run():
        for _ in range(steps):
            case.mf_step()
            sync()

    t0 = time.perf_counter()
    if profiler == "none":
        steps_run()
    elif profiler == "pyinstrument":
        import pyinstrument

        prof = pyinstrument.Profiler(interval=0.0005)
        with prof:
            steps_run()
    else:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(steps_run)
    print(f"{name} on {device}: {steps} steps, {(time.perf_counter() - t0) / steps * 1e3:.1f} ms/step "
          f"under {profiler}")
    if profiler == "pyinstrument":
        print(prof.output_text(unicode=False, color=False, show_all=False, short_mode=False))
    elif profiler == "cprofile":
        pstats.Stats(prof).sort_stats("tottime").print_stats(top)


# ================================================================================ main
def _case_list(text: str) -> set:
    """``--only``: comma-separated case names, each one of ``WORKLOADS``, ``MICRO_CASES`` or ``micro``."""
    valid = WORKLOADS + MICRO_CASES + ("micro",)
    names = {s.strip() for s in text.split(",") if s.strip()}
    unknown = sorted(names - set(valid))
    if unknown or not names:
        what = f"unknown case(s) {', '.join(map(repr, unknown))}" if unknown else f"no case names in {text!r}"
        raise argparse.ArgumentTypeError(f"{what}; choose from {', '.join(valid)}")
    return names


def _positive_int(text: str) -> int:
    """``--threads``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _json_file(text: str) -> str:
    """``--json``: a file that can be written, checked before any work (not after the whole run) by opening
    it for appending (``os.access`` says yes to root everywhere, /proc included); a file this creates is
    removed again."""
    path = Path(text)
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {str(folder)!r} of {text!r} does not exist")
    existed = path.exists()
    try:
        with open(path, "a"):
            pass
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not writable ({error.strerror})") from None
    if not existed:
        path.unlink()
    return text


def _gpu_only(result, mode, cfg, torch, started, json_file, only) -> dict:
    """``--gpu-only``: the GPU table alone (the cases ``only`` selects)."""
    result["gpu"] = gpu = gpu_section(mode, cfg["steps"], cfg["warmup"], torch, only)
    result["elapsed_s"] = time.perf_counter() - started
    print(f"## GPU (CuPy, fused kernels on/off; PyTorch CUDA eager; {mode}; minifb {result['minifb']})\n")
    print(f"skipped: {gpu['skipped']}" if "skipped" in gpu else markdown_gpu(gpu))
    print(f"\n(total {result['elapsed_s']:.0f} s)")
    if json_file:
        write_json(json_file, result)
    return result


def main(argv=None) -> dict:
    """Parse the command line, run the benchmarks, print the tables; return the results as a dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and T values (< 2 minutes)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one step each (for tests)")
    parser.add_argument("--json", metavar="FILE", type=_json_file,
                        help="also write the results as JSON to FILE (its folder must exist; not with --profile)")
    parser.add_argument("--only", type=_case_list, default=set(), metavar="CASE,...",
                        help=f"comma-separated cases to run, from {', '.join(WORKLOADS + MICRO_CASES)} "
                             "and micro (all three micro cases); default: all")
    parser.add_argument("--no-scaling", action="store_true", help="skip the T sweep")
    parser.add_argument("--gpu-only", action="store_true",
                        help="run only the GPU table (CuPy with fused kernels on and off, PyTorch CUDA eager)")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="threads for PyTorch and for NumPy's BLAS (threadpoolctl); default 2, the "
                             "thread count the targets are set for (1 under --smoke). On a busy machine 1 thread "
                             "gives steadier ratios (no spinning thread waits for a core)")
    parser.add_argument("--profile", metavar="CASE", choices=WORKLOADS + MICRO_CASES,
                        help=f"profile CASE's minifb step and exit; one of {', '.join(WORKLOADS + MICRO_CASES)}")
    parser.add_argument("--profiler", choices=("auto", "pyinstrument", "cprofile", "none"),
                        default="auto",
                        help="the --profile run's profiler: pyinstrument (sampling, a call tree), cprofile "
                             "(deterministic, functions by own time), none (the steps alone, for an outside "
                             "sampler such as py-spy) or auto (pyinstrument when installed)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="the device of the --profile run (default cpu)")
    parser.add_argument("--hold-memory", action="store_true",
                        help="first call minifb.memory.hold_freed_memory() (glibc): the process, and so both "
                             "libraries, keeps the memory it frees rather than taking it from the system again "
                             "at each step (benchmarks/NOTES.md, \"Session 18\")")
    parser.add_argument("--memory-child", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return {}
    if args.quick and args.smoke and not args.profile:
        parser.error("argument --smoke: not allowed with argument --quick (except under --profile)")
    if args.profile and args.json:
        parser.error("argument --json: --profile prints its report and writes no JSON; drop one of them")
    if args.profile:
        _limit_blas(args.threads or 2)
        if args.device == "cuda" and not backend.cuda_available():
            parser.error("--device cuda needs CuPy and a GPU")
        if args.profiler == "pyinstrument" and not importlib.util.find_spec("pyinstrument"):
            parser.error("--profiler pyinstrument needs pyinstrument (pip install pyinstrument, or the bench extra)")
        profile(args.profile, "smoke" if args.smoke else "full", steps=3 if args.quick else 10, device=args.device,
                profiler=args.profiler)
        return {}

    held = args.hold_memory and hold_freed_memory()   # before the cases are built: the whole run keeps freed memory
    if args.hold_memory and not held:
        print("--hold-memory: not glibc; the allocator is left as it is", file=sys.stderr)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = SETTINGS[mode]
    only = args.only
    threads = args.threads or (1 if mode == "smoke" else 2)  # smoke: 1 thread, no spinning on a busy machine
    settle = 0.0 if mode == "smoke" else SETTLE_S
    torch = _import_torch(threads)
    _limit_blas(threads)
    gc.freeze()  # keep the per-step collections (outside the timed region) short
    started = time.perf_counter()
    result = {"mode": mode, "threads": threads, "minifb": str(Path(mf.__file__).resolve().parent), "settle_s": settle, "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
              "environment": environment(), "hold_freed_memory": bool(held),
              "targets": TARGETS, "memory_targets": MEMORY_TARGETS,
              "memory_method": "peak RSS delta of one step in a child with MALLOC_MMAP_THRESHOLD_=4096 "
                               "(VmHWM after clear_refs=5 minus VmRSS before); minifb also tracemalloc peak"}
    if args.gpu_only:
        return _gpu_only(result, mode, cfg, torch, started, args.json, only)
    result["gemm"] = gemm_rate(torch, cfg["gemm_n"], settle)

    # ---- main table
    cases = [build(n, torch, mode) for n in WORKLOADS if _wanted(n, only)]
    if any(_wanted(n, only) for n in MICRO_CASES):
        cases += [c for c in build_micro(torch, small=mode == "smoke") if _wanted(c.name, only)]
    rows = []
    for case in cases:
        rows.append(time_case(case, cfg["steps"], cfg["warmup"], cfg["budget_s"], settle))
        print(f"  timed {case.name}: {rows[-1]['minifb_s'] * 1e3:.1f} ms vs "
              f"{_ms(rows[-1]['torch_s'])} ms", file=sys.stderr)
    del cases
    gc.collect()

    # ---- scaling
    scaling = {}
    if not args.no_scaling:
        for name in ("W1", "W2"):
            if not _wanted(name, only):
                continue
            srows = []
            for T in cfg["scaling_T"]:
                budget = None if cfg["budget_s"] is None else cfg["budget_s"] / 2
                r = time_case(build(name, torch, mode, T=T), cfg["scaling_steps"], 1, budget, settle)
                r["T"] = T
                srows.append(r)
            scaling[name] = {"rows": srows}
            print(f"  scaled {name}", file=sys.stderr)

    # ---- memory (one child for every case)
    mem_cases = {r["name"]: (r["name"], None) for r in rows}
    for name, entry in scaling.items():
        for r in entry["rows"]:
            if mode != "smoke":
                mem_cases[f"{name}@T={r['T']}"] = (name, r["T"])
    memory = measure_memory(mem_cases, mode, threads)
    result["memory_error"] = memory.get("error")
    for r in rows:
        r["memory"] = memory.get(r["name"], {})
        m = r["memory"]
        if m.get("torch_peak_rss"):
            r["memory_ratio"] = m["minifb_peak_rss"] / m["torch_peak_rss"]
    for name, entry in scaling.items():
        for r in entry["rows"]:
            r["memory"] = memory.get(f"{name}@T={r['T']}", {})
        entry["note"] = linearity_note(entry["rows"])

    result["rows"], result["scaling"] = rows, scaling
    result["gpu"] = gpu_section(mode, cfg["steps"], cfg["warmup"], torch, only)
    judged = mode != "smoke"   # --smoke's tiny shapes say nothing about the targets
    for r in rows:
        annotate(r, result["gemm"]["peak_gflops"], judged)
    if judged:
        result["targets_met"] = {r["name"]: verdict(r) == "ok" for r in rows if verdict(r) is not None}
        for name, limit in MEMORY_TARGETS.items():
            r = next((r for r in rows if r["name"] == name), None)
            if r is not None and r.get("memory_ratio") is not None:
                result["targets_met"][f"{name} memory"] = r["memory_ratio"] <= limit
    else:
        result["targets_met"] = None
    result["elapsed_s"] = time.perf_counter() - started

    env = result["environment"]
    blas = env["blas"] if isinstance(env["blas"], str) else ", ".join(
        f"{b['prefix']} {b['version'] or ''} {b['architecture'] or ''} x{b['num_threads']}".strip()
        for b in env["blas"])
    print(f"## minifb vs PyTorch ({mode}, {threads} thread(s); minifb {result['minifb']}; {env.get('cpu', '?')}, {env['cores']} cores; BLAS: {blas}; "
          f"OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}, OPENBLAS_L2_SIZE={env['OPENBLAS_L2_SIZE']}; "
          f"convolutions: {_conv_path(env)}; torch {env['torch']}"
          f"{'; freed memory held (--hold-memory)' if result['hold_freed_memory'] else ''})\n")
    print(markdown_main(rows, result["gemm"], judged))
    if result["memory_error"]:
        print(f"\n(peak memory not measured: {result['memory_error']})")
    if scaling:
        print("\n## Scaling in T\n")
        print(markdown_scaling(scaling))
    gpu = result["gpu"]
    print("\n## GPU (CuPy, fused kernels on/off; PyTorch CUDA eager)\n")
    print(f"skipped: {gpu['skipped']}" if "skipped" in gpu else markdown_gpu(gpu))
    print(f"\n(total {result['elapsed_s']:.0f} s)")
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
