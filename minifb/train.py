"""The recurrent training protocol of FeedbackNets.jl, on the shipped digits or MNIST.

A network with feedback gives an answer that changes with time, so every image
is shown for ``T`` timesteps (default 4) and the network is scored at each:

1. the state is reset for every batch: ``rnet = nn.Recur(net, net.initial_state(xb))``, and
   every ``Recur`` inside ``net`` is reset too;
2. the same image goes in ``T`` times, ``logits_t = rnet(xb)`` for ``t = 1..T``;
3. the loss is the sum over timesteps, ``L = sum_t loss(logits_t, y)``
   (cross-entropy for single labels, binary cross-entropy on logits for the
   multi-hot labels of the ``clutter`` corruption);
4. ``L.backward()`` back-propagates through all ``T`` steps (BPTT). With
   ``truncate=k`` the state is detached every ``k`` steps (truncated BPTT:
   no gradient crosses a detach) and each window is back-propagated as soon
   as it is complete, so at most ``k`` steps are kept on the tape;
5. optionally the gradients are clipped to a global norm, then one optimiser step.

Evaluation (:func:`evaluate`) reports the accuracy at *every* timestep.

The building blocks are usable on their own::

    import numpy as np
    from minifb import data, models, optim, train

    ds = data.load("digits", size=16)
    net = models.build("spoerer-BLT", input_size=16)
    opt = optim.Adam(net.parameters(), lr=2e-3)
    for xb, yb in data.batches(ds.x_train, ds.y_train, 64, rng=np.random.default_rng(0)):
        loss, logits = train.train_step(net, opt, xb, yb, steps=4)
    print(train.evaluate(net, ds.x_test, ds.y_test, steps=4))   # [acc_t1, ..., acc_t4]

and :func:`train` does everything the ``minifb train`` command does (build,
train, evaluate, checkpoint, write ``metrics.json``) and returns the history.

The state starts from ``net.initial_state(xb)``, zeros. For another initial
state, hand-built or learned, pass ``nn.Recur(net, state0)`` as the model to
:func:`train_step`, :func:`sequence_loss`, :func:`evaluate` or :func:`fit`: it is
called as ``logits = rnet(x)`` and goes back to ``state0`` for every batch
(the steps and gradients are those of the ``net`` with that state), and the
Parameters in ``state0`` are trained with the others. ``state0`` must fit
every batch, so give a learned one a batch of 1, which broadcasts::

    shapes = net.initial_state(mf.tensor(xb[:1]))
    rnet = nn.Recur(net, {k: nn.Parameter(v) for k, v in shapes.items()})
    opt = optim.Adam(rnet.parameters(), lr=2e-3)      # net's parameters and state0
    loss, logits = train.train_step(rnet, opt, xb, yb, steps=4)
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np

from . import backend, checks, kernels, data as mfdata
from . import functional as F
from .nn import BatchNorm, Dropout, Module, Recur, detach_state, reset_state
from .serialization import save, written_whole
from .tensor import Tensor, data_of, no_grad

__all__ = [
    "DEFAULTS",
    "default_size",
    "sequence_loss",
    "train_step",
    "evaluate",
    "accuracy",
    "fit",
    "make_optimizer",
    "build_model",
    "count_parameters",
    "prepare_data",
    "corrupted",
    "train",
    "train_model",
    "save_metrics",
    "plot_curves",
]

DEFAULTS = {
    "model_name": "spoerer-BLT",
    "data": "digits",
    "corrupt": "none",
    "steps": 4,
    "epochs": 4,
    "batch": 32,
    "lr": 3e-3,
    "optimizer": "adam",
    "device": "cpu",
    "seed": 0,
    "size": None,
    "truncate": None,
    "clip": 5.0,
    "weight_decay": 0.0,
    "limit": None,
}
"""The defaults of :func:`train` and of ``minifb train``.

The default run trains Spoerer et al.'s recurrent network with lateral and
top-down feedback (``spoerer-BLT``) on the shipped digits upsampled to 16x16
(not 28x28: at 28x28 the same network needs about 4x the time per epoch and
more epochs) for 4 epochs. Measured on two otherwise idle CPU cores: about
18-25 s, 96.0-97.3% clean test accuracy at the last timestep over seeds 0-2.
``size=None`` picks :func:`default_size`: 16 for the Spoerer models, 28 for
the LeNet models (designed for 28x28; they zero-pad smaller inputs up to it,
so a smaller size saves them no time)."""


def default_size(model_name: str) -> int:
    """The default image side for a model: 28 for ``lenet5``/``lenet5_fb``, 16 for the ``spoerer-*`` models.

    Raises:
        ValueError: ``model_name`` is not a name in :data:`minifb.models.MODEL_NAMES` (``None``, ``2.5``).
    """
    from . import models

    if not (isinstance(model_name, str) and model_name in models.MODEL_NAMES):
        raise ValueError(f"default_size: unknown model {model_name!r}: expected one of "
                         f"{', '.join(models.MODEL_NAMES)}")
    return 28 if model_name.startswith("lenet") else 16

OPTIMIZERS = ("sgd", "adam", "adamw")


# --------------------------------------------------------------------------
# One batch
# --------------------------------------------------------------------------


def _as_input(x, device) -> Tensor:
    """A batch of images as a Tensor on ``device`` (no copy when already there)."""
    if isinstance(x, Tensor):
        return x if x.device == device else x.to(device)
    # to_device first: np.asarray would refuse a CuPy array (no implicit copies to the host)
    return Tensor(backend.to_device(x, device).astype(np.float32, copy=False))


def _device_of(net) -> str:
    for p in net.parameters():
        return p.device
    return "cpu"


def _labels_on(y, device: str, multilabel: bool):
    """The labels as the loss takes them, on ``device``: float32 multi-hot targets or int64 class indices
    (the callers have checked that class indices are integers, _check_labels: this cast only widens)."""
    return backend.to_device(data_of(y), device).astype(np.float32 if multilabel else np.int64, copy=False)


def _step_loss(logits: Tensor, labels, multilabel: bool) -> Tensor:
    """The loss of one timestep: mean cross-entropy, or mean binary cross-entropy for multi-hot labels;
    ``labels`` as :func:`_labels_on` gives them, on the logits' device."""
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, Tensor(labels))
    return F.cross_entropy(logits, labels)


def _is_multilabel(y) -> bool:
    return np.ndim(y) == 2


def _label_dtype(y) -> np.dtype:
    """The dtype of labels given as a Tensor, a NumPy or CuPy array, or a list (read without a copy to the host)."""
    y = data_of(y)
    return np.dtype(y.dtype) if hasattr(y, "dtype") else np.asarray(y).dtype


def _check_labels(fn: str, y, name: str = "labels y") -> None:
    """Refuse class-index labels (1-d) that are not integers: a cast would truncate 1.7 to 1, or read bools as 0/1.

    Multi-hot labels (2-d) are targets of a binary cross-entropy and may be any real numbers.
    """
    if not _is_multilabel(y) and _label_dtype(y).kind not in "iu":
        raise TypeError(f"{fn}: {name} must be integers (class indices), or multi-hot of shape (N, classes); "
                        f"got dtype {_label_dtype(y)}")


def _check_optimizer(fn: str, opt) -> None:
    if not (callable(getattr(opt, "zero_grad", None)) and callable(getattr(opt, "step", None))):
        raise TypeError(f"{fn}: opt must be an optimiser with zero_grad() and step() (e.g. make_optimizer(...)), "
                        f"got {opt!r}")


def _holds_state(state) -> bool:
    """Whether a cell's state carries anything between steps: a Tensor does, a dict, list or tuple when it
    is not empty (a FeedbackChain without Splitters has ``{}``), ``None`` does not. (Not ``bool(state)``,
    which a Tensor of several elements refuses and a one-element zero Tensor answers False.)"""
    if state is None:
        return False
    if isinstance(state, (dict, list, tuple)):
        return len(state) > 0
    return True


class _Batch:
    """One batch's run of the protocol: ``logits = run(x)`` once per timestep, from a zero state.

    The feedback state of ``net`` (when it has :meth:`initial_state`) is carried by a
    :class:`~minifb.nn.Recur` made for this batch, and every ``Recur`` nested inside ``net`` (an
    ``nn.LSTM`` in a chain, say) is reset, so each batch starts from zero state as Flux's ``reset!``
    does, and is detached with it under truncated BPTT.

    Attributes:
        varies: whether the steps can differ: state carried between them, a Dropout in training mode
            drawing a new mask at each step, or a BatchNorm in training mode updating its running
            statistics at each step. A model with none of these gives the same logits at every step and
            changes nothing by running, so the protocol runs it once.
    """

    def __init__(self, net, x: Tensor):
        self.net = net
        modules = list(net.modules()) if isinstance(net, Module) else []
        inner = [m for m in modules if isinstance(m, Recur)]
        if inner:
            reset_state(net)   # before initial_state(x), which runs the net: no state of an earlier batch
        self.outer = Recur(net, net.initial_state(x)) if hasattr(net, "initial_state") else None
        self.top = self.outer if self.outer is not None else net   # detaching it reaches every Recur
        draws_dropout = any(isinstance(m, Dropout) and m.training and m.p > 0 for m in modules)
        tracks_stats = any(isinstance(m, BatchNorm) and m.training for m in modules)
        carries = self.outer is not None and _holds_state(self.outer.state)
        self.varies = bool(inner) or carries or draws_dropout or tracks_stats

    def __call__(self, x):
        return self.outer(x) if self.outer is not None else self.net(x)

    def detach(self):
        """Cut the tape at the current state, keeping its values (truncated BPTT)."""
        detach_state(self.top)   # called only when the steps vary (otherwise the model runs once)


def _unroll(net, x: Tensor, y, steps: int, multilabel: bool, truncate: int | None, backward: bool):
    """Run ``steps`` timesteps on one batch; return (summed loss value, [logits_t], loss Tensor).

    With ``backward`` the loss is back-propagated: once at the end, or after
    every window of ``truncate`` steps (the state is detached between windows,
    so each window's graph is freed as soon as it is back-propagated). The
    returned loss Tensor is that of the last window.

    A model whose steps cannot differ (no feedback state, no nested ``Recur``,
    no Dropout or BatchNorm in training mode) is run once and its loss counted
    ``steps`` times (the same value and gradient as unrolling it).
    """
    y = _labels_on(y, x.device, multilabel)   # once a batch, not at every timestep
    rnet = _Batch(net, x)
    if not rnet.varies:
        logits = rnet(x)
        loss = _step_loss(logits, y, multilabel) * float(steps)
        if backward:
            loss.backward()
        return float(loss.data), [logits] * steps, loss
    logits_seq, total, window = [], 0.0, None
    for t in range(steps):
        logits = rnet(x)
        logits_seq.append(logits)
        loss_t = _step_loss(logits, y, multilabel)
        window = loss_t if window is None else window + loss_t
        if truncate is not None and (t + 1) % truncate == 0 and t + 1 < steps:
            if backward:
                window.backward()
            total += float(window.data)
            window = None
            rnet.detach()
    if backward:
        window.backward()
    total += float(window.data)
    return total, logits_seq, window


def sequence_loss(net, x, y, steps: int = 4):
    """The protocol's loss on one batch: ``sum_t loss(logits_t, y)`` over ``steps`` timesteps.

    The state starts from ``net.initial_state(x)``; nothing is detached, so
    ``loss.backward()`` is full backprop-through-time.

    Args:
        net: a model called as ``state, logits = net(state, x)``, or
            ``nn.Recur(net, state0)`` to start from ``state0`` (see the module
            docstring).
        x: images ``(N, C, H, W)``, a Tensor or an array.
        y: integer labels ``(N,)``, or multi-hot labels ``(N, classes)``
            (then the per-step loss is binary cross-entropy on the logits).
        steps: the number of timesteps ``T`` (>= 1).

    Returns:
        ``(loss, logits)``: the scalar loss Tensor and the list of ``T``
        logits Tensors ``(N, classes)``, one per timestep.

    Raises:
        TypeError: ``y`` is 1-d but not integers (float or bool labels are not
            truncated to class indices).
        ValueError: ``steps`` is not a positive integer, or ``y`` does not fit
            the logits (from the loss).

    Example:
        >>> from minifb.train import build_model, sequence_loss
        >>> net = build_model("spoerer-BT", 8, features=4)
        >>> xb, yb = np.random.rand(2, 1, 8, 8).astype("float32"), np.array([3, 7])
        >>> loss, logits = sequence_loss(net, xb, yb, steps=4)
        >>> len(logits), logits[0].shape
        (4, (2, 10))
        >>> loss.backward()
    """
    steps = checks.integer("sequence_loss", "steps", steps)
    _check_labels("sequence_loss", y)
    x = _as_input(x, _device_of(net))
    _, logits, loss = _unroll(net, x, y, steps, _is_multilabel(y), None, backward=False)
    return loss, logits


def train_step(net, opt, x, y, steps: int = 4, truncate: int | None = None, clip: float | None = None):
    """One optimiser step of the recurrent protocol on one batch.

    Zeroes the gradients, unrolls ``steps`` timesteps from a fresh state,
    back-propagates the loss summed over timesteps (through time; with
    ``truncate=k`` the state is detached every ``k`` steps), clips the global
    gradient norm to ``clip`` if given, and steps the optimiser.

    Args:
        net: the model (``state, logits = net(state, x)``), in training mode,
            started from ``net.initial_state(x)``; or ``nn.Recur(net, state0)``
            to start from a hand-built or learned ``state0`` (a batch of 1
            broadcasts; see the module docstring).
        opt: an optimiser over ``net.parameters()`` (those of the Recur to
            train a learned ``state0``).
        x: images ``(N, C, H, W)``.
        y: labels ``(N,)`` int, or multi-hot ``(N, classes)``.
        steps: timesteps ``T``.
        truncate: detach the state every ``truncate`` steps (``None``: full BPTT).
        clip: the largest allowed global gradient norm (``None``: no clipping).

    Returns:
        ``(loss, logits)``: the summed loss as a float and the ``T`` logits
        Tensors (detached from the tape).

    Raises:
        TypeError: ``opt`` has no ``zero_grad()``/``step()``, or ``y`` is 1-d
            but not integers.
        ValueError: ``steps`` or ``truncate`` is not a positive integer, or
            ``y`` does not fit the logits (from the loss).
    """
    from .optim import clip_grad_norm

    steps = checks.integer("train_step", "steps", steps)
    if truncate is not None:
        truncate = checks.integer("train_step", "truncate", truncate)
    clip = _check_clip("train_step", clip)
    _check_optimizer("train_step", opt)
    _check_labels("train_step", y)
    x = _as_input(x, _device_of(net))
    opt.zero_grad()
    total, logits, _ = _unroll(net, x, y, steps, _is_multilabel(y), truncate, backward=True)
    if clip is not None:
        clip_grad_norm(net.parameters(), clip)
    opt.step()
    return total, [lg.detach() for lg in logits]


def accuracy(logits, y) -> float:
    """The fraction of correct answers.

    For integer labels ``(N,)``: top-1 accuracy. For multi-hot labels
    ``(N, classes)`` with ``k_i`` ones in row ``i``: the mean over images of the
    fraction of the ``k_i`` present classes found among the ``k_i`` highest
    logits (Spoerer et al.'s measure for cluttered digits).

    Args:
        logits: ``(N, classes)``, a Tensor or an array.
        y: labels as above.

    Returns:
        A float in ``[0, 1]`` (``nan`` for an empty batch).

    Raises:
        ValueError: ``logits`` is not 2-d, ``y`` is neither ``(N,)`` nor
            ``(N, classes)`` (nothing is broadcast: ``(1,)`` or an int
            ``(N, 1)`` is refused), or a class index is outside ``0..classes-1``.
        TypeError: 1-d labels that are not integers.
    """
    scores = backend.to_numpy(data_of(logits))
    y = np.asarray(backend.to_numpy(data_of(y)))
    if scores.ndim != 2:
        raise ValueError(f"accuracy: logits must have shape (N, classes), got {scores.shape}")
    n, classes = scores.shape
    if y.shape not in ((n,), (n, classes)):
        raise ValueError(f"accuracy: logits of shape {scores.shape} need labels of shape ({n},) or "
                         f"({n}, {classes}), got {y.shape}")
    if y.ndim == 1 and y.dtype.kind not in "iu":
        raise TypeError(f"accuracy: labels y of shape {y.shape} must be integer class indices, got dtype {y.dtype}")
    if y.ndim == 1 and len(y) and (y.min() < 0 or y.max() >= classes):   # would count as wrong answers
        raise ValueError(f"accuracy: class indices must be in 0..{classes - 1} for {classes} logits, got values "
                         f"from {y.min()} to {y.max()}")
    if len(y) == 0:
        return float("nan")
    if y.ndim == 1:
        return float((scores.argmax(axis=1) == y).mean())
    k = y.sum(axis=1).round().astype(np.int64)
    order = np.argsort(-scores, axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :].repeat(len(y), 0), axis=1)
    hits = ((ranks < k[:, None]) & (y > 0.5)).sum(axis=1)
    return float(np.mean(hits / np.maximum(k, 1)))


def evaluate(net, x, y, steps: int = 4, batch: int = 256) -> list:
    """The accuracy at every timestep, on a whole set, without recording a tape.

    Args:
        net: the model; it is put in evaluation mode and restored afterwards.
            Its state starts from ``net.initial_state(xb)`` for every batch;
            pass ``nn.Recur(net, state0)`` to start from ``state0`` (which must
            fit every batch: a batch of 1 broadcasts).
        x: images ``(N, C, H, W)`` (a NumPy array).
        y: labels ``(N,)`` or multi-hot ``(N, classes)``.
        steps: timesteps ``T``.
        batch: images per forward pass.

    Returns:
        A list of ``T`` floats: ``[acc_t1, ..., acc_tT]`` (``nan`` each for an empty set).

    Example:
        >>> from minifb.train import build_model, evaluate, prepare_data
        >>> ds = prepare_data("digits", size=8, limit=100)
        >>> net = build_model("spoerer-BT", 8, features=4)
        >>> accs = evaluate(net, ds.x_test, ds.y_test, steps=4)   # after training: e.g. [0.93, 0.95, 0.96, 0.96]
        >>> len(accs), all(0 <= a <= 1 for a in accs)
        (4, True)
    """
    steps = checks.integer("evaluate", "steps", steps)
    batch = checks.integer("evaluate", "batch", batch)
    _check_labels("evaluate", y)
    y = backend.to_numpy(data_of(y))
    if len(x) != len(y):
        raise ValueError(f"evaluate: x has {len(x)} images but y has {len(y)} labels")
    device = _device_of(net)
    modes = [(m, m.training) for m in net.modules()]
    correct = np.zeros(steps)
    net.eval()
    try:
        with no_grad():
            for xb, yb in mfdata.batches(x, y, batch, shuffle=False):
                xt = _as_input(xb, device)
                rnet = _Batch(net, xt)
                same_each_step = not rnet.varies
                logits = None
                for t in range(steps):
                    if logits is None or not same_each_step:  # e.g. a feedforward model in eval mode
                        logits = rnet(xt)
                    correct[t] += accuracy(logits, yb) * len(yb)
    finally:
        for m, mode in modes:
            m.training = mode
    return [float(c / len(y)) if len(y) else float("nan") for c in correct]   # nan: no images, as accuracy


# --------------------------------------------------------------------------
# Building blocks of a run
# --------------------------------------------------------------------------


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0):
    """Build ``sgd`` (momentum 0.9), ``adam`` or ``adamw`` over ``params``.

    ``weight_decay`` is the L2 penalty of ``sgd`` and ``adam`` and the decoupled decay of ``adamw``, whose
    ``0`` means AdamW's usual 0.01 (pass a small positive number for less).
    """
    from . import optim

    key = str(name).lower()
    lr = checks.number("make_optimizer", "lr", lr, above=0, finite=True)
    if key == "sgd":
        return optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if key == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if key == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay or 1e-2)
    raise ValueError(f"make_optimizer: unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")


def build_model(name: str, size: int, classes: int = 10, channels: int = 1, features: int | None = None):
    """Build a model from :mod:`minifb.models` for ``channels x size x size`` inputs.

    Args:
        name: a name in :data:`minifb.models.MODEL_NAMES`.
        size: the image side.
        classes: the number of logits.
        channels: input channels.
        features: feature maps per layer of a Spoerer model (``None``: the
            factory's default, 32); LeNet models have fixed widths.

    Raises:
        ValueError: for an unknown model name (the message lists the known
            ones), ``features`` given for a LeNet model, or a ``size``,
            ``classes``, ``channels`` or ``features`` that is not a positive integer.
    """
    from . import models

    if name not in models.MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(models.MODEL_NAMES)}")
    kwargs = dict(input_size=checks.integer("build_model", "size", size),
                  classes=checks.integer("build_model", "classes", classes),
                  channels=checks.integer("build_model", "channels", channels))
    if features is not None:
        if not name.startswith("spoerer-"):
            raise ValueError(f"features applies to the spoerer-* models only, not {name!r}")
        kwargs["features"] = checks.integer("build_model", "features", features)
    return models.build(name, **kwargs)


def count_parameters(net) -> int:
    """The number of trainable scalars in ``net``.

    Raises:
        TypeError: ``net`` is not a model (it has no ``parameters()``: None, a list of Tensors).
    """
    if not callable(getattr(net, "parameters", None)):
        raise TypeError(f"count_parameters: net must be a model with parameters() (an nn.Module), "
                        f"got {type(net).__name__}")
    return int(sum(int(np.prod(p.shape)) for p in net.parameters()))


def prepare_data(spec: str = "digits", size: int = 16, seed: int = 0, limit: int | None = None):
    """Load a data set (see :func:`minifb.data.load`), keeping the first ``limit`` train and test images."""
    if limit is not None:
        limit = checks.integer("prepare_data", "limit", limit)
    ds = mfdata.load(spec, size=size, seed=seed)
    if limit is not None:
        ds = ds.subset(limit, limit)
    return ds


def corrupted(ds, x, y, name: str, rng, level=None):
    """Corrupt standardised images ``x``: unstandardise, corrupt, standardise.

    Debris and clutter are cut from the training images of ``ds``.

    Returns:
        ``(x, y)``: standardised corrupted images and labels (multi-hot for clutter).
    """
    if str(name).lower() == "none":
        return x, y
    raw, labels = mfdata.corrupt(name, ds.unstandardise(x), y, rng=rng, level=level,
                                 source_images=ds.unstandardise(ds.x_train), source_labels=ds.y_train)
    return ds.standardise(raw), labels


def _test_set(ds, corrupt: str, seed: int):
    """The test images and labels a run is scored on: one fixed draw of ``corrupt`` (seeded by ``seed + 1``)."""
    return corrupted(ds, ds.x_test, ds.y_test, corrupt, np.random.default_rng(seed + 1))


def _check_schedule(fn, steps, epochs, batch, truncate, clip, corrupt, seed):
    """Check the training-loop arguments of :func:`fit` and :func:`train` (``fn``, for the messages);
    return ``(steps, epochs, batch, truncate, clip, corrupt, seed)``."""
    steps = checks.integer(fn, "steps", steps)
    batch = checks.integer(fn, "batch", batch)
    epochs = checks.integer(fn, "epochs", epochs, minimum=0)
    seed = checks.integer(fn, "seed", seed, minimum=0)
    if truncate is not None:
        truncate = checks.integer(fn, "truncate", truncate)
        if truncate > steps:
            raise ValueError(f"{fn}: truncate must be at most steps ({steps}), got {truncate} "
                             "(None is full BPTT)")
    clip = _check_clip(fn, clip)
    if str(corrupt).lower() not in mfdata.CORRUPTIONS:
        raise ValueError(f"{fn}: unknown corruption {corrupt!r}: expected one of {', '.join(mfdata.CORRUPTIONS)}")
    return steps, epochs, batch, truncate, clip, str(corrupt).lower(), seed


def _check_clip(fn, clip):
    """``clip`` as a float > 0 (a finite gradient-norm bound), or None for no clipping."""
    return None if clip is None else checks.number(fn, "clip", clip, above=0, finite=True)


def _progress(iterable, total, desc, enabled):
    """Wrap ``iterable`` in a tqdm bar when tqdm is installed and ``enabled``; else return it."""
    if not enabled:
        return None, iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None, iterable
    # disable=None: no bar when stderr is not a terminal (logs, CI, pipes)
    bar = tqdm(iterable, total=total, desc=desc, leave=False, unit="batch", file=sys.stderr, disable=None)
    return bar, bar


def fit(net, ds, *, steps=4, epochs=4, batch=32, lr=3e-3, optimizer="adam", seed=0, corrupt="none",
        truncate=None, clip=5.0, weight_decay=0.0, progress=True, log=print, on_epoch=None, history=None):
    """Train ``net`` on ``ds`` with the recurrent protocol and evaluate after every epoch.

    Each epoch shuffles the training set (seeded), optionally corrupts it
    afresh (``corrupt``), runs :func:`train_step` on every batch and then
    :func:`evaluate` on the test set, corrupted with the same corruption (a
    fixed draw); with a corruption, the clean test accuracy is reported too.
    The learning rate follows a cosine decay over the run: batch ``b`` of
    ``B`` (counted from 0 over all epochs) uses ``lr * (0.05 + 0.475 * (1 +
    cos(pi * b / B)))``, from ``lr`` towards ``lr / 20`` (the last batch's is
    a little above it; each epoch's record holds its last batch's rate).

    Args:
        net: the model, on the device it should train on; as in
            :func:`train_step`, ``nn.Recur(net, state0)`` starts every batch
            from ``state0`` and trains the Parameters in it.
        ds: a :class:`minifb.data.Dataset`.
        steps, epochs, batch, lr, optimizer, seed, truncate, clip,
            weight_decay: as in :func:`train`.
        corrupt: a corruption name (:data:`minifb.data.CORRUPTIONS`).
        progress: show a tqdm progress bar when tqdm is installed.
        log: where the per-epoch line goes (``print``; ``None`` for silence).
        on_epoch: called as ``on_epoch(history)`` after each epoch (checkpointing).
        history: a dict to append to (it gets ``"epochs"``).

    Returns:
        The history dict: ``{"epochs": [{"epoch", "loss", "train_accuracy",
        "test_accuracy" (list of T), "clean_accuracy" (list of T, with a
        corruption), "lr", "seconds"}, ...]}``.

    Raises:
        ValueError: a bad schedule argument (``steps``, ``epochs``, ``batch``,
            ``truncate``, ``clip``, ``seed``, ``corrupt``, ``optimizer``; the
            message names ``fit``), or a bad ``lr`` (named ``make_optimizer``).
        TypeError: ``net`` has no ``parameters()`` method (is not a model such
            as an ``nn.Module``), ``ds`` is not a :class:`minifb.data.Dataset`,
            ``clip``, ``seed`` or ``lr`` is not a number, or ``ds.y_train`` or
            ``ds.y_test`` is 1-d but not integers.
    """
    if not callable(getattr(net, "parameters", None)):
        raise TypeError(f"fit: net must be a model with parameters() (an nn.Module), got {type(net).__name__}")
    if not isinstance(ds, mfdata.Dataset):
        raise TypeError(f"fit: ds must be a minifb.data.Dataset (from train.prepare_data or data.load), "
                        f"got {type(ds).__name__}")
    steps, epochs, batch, truncate, clip, corrupt, seed = _check_schedule("fit", steps, epochs, batch, truncate,
                                                                          clip, corrupt, seed)
    _check_labels("fit", ds.y_train, "ds.y_train")
    _check_labels("fit", ds.y_test, "ds.y_test")
    history = {} if history is None else history
    history.setdefault("epochs", [])
    opt = make_optimizer(optimizer, net.parameters(), lr, weight_decay)
    rng = np.random.default_rng(seed)
    x_test, y_test = _test_set(ds, corrupt, seed)
    n_batches = math.ceil(len(ds.x_train) / batch)
    total_batches = max(1, epochs * n_batches)
    done = 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        net.train()
        x_train, y_train = corrupted(ds, ds.x_train, ds.y_train, corrupt, rng)
        losses, correct, seen = 0.0, 0.0, 0
        bar, it = _progress(mfdata.batches(x_train, y_train, batch, rng=rng), n_batches,
                            f"epoch {epoch}/{epochs}", progress)
        try:
            for xb, yb in it:
                # Cosine decay of the learning rate over the whole run, towards lr / 20.
                opt.lr = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done / total_batches)))
                loss, logits = train_step(net, opt, xb, yb, steps=steps, truncate=truncate, clip=clip)
                done += 1
                losses += loss * len(yb)
                correct += accuracy(logits[-1], yb) * len(yb)
                seen += len(yb)
                if bar is not None:
                    bar.set_postfix(loss=f"{losses / seen:.3f}", acc=f"{correct / seen:.3f}")
        finally:
            if bar is not None:
                bar.close()
        record = {
            "epoch": epoch,
            "loss": losses / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "test_accuracy": evaluate(net, x_test, y_test, steps),
            "lr": opt.lr,
        }
        if corrupt != "none":
            record["clean_accuracy"] = evaluate(net, ds.x_test, ds.y_test, steps)
        record["seconds"] = time.perf_counter() - start
        history["epochs"].append(record)
        if log is not None:
            log(_epoch_line(record, epochs))
        if on_epoch is not None:
            on_epoch(history)
    return history


def _epoch_line(record, epochs) -> str:
    accs = " ".join(f"{a:.3f}" for a in record["test_accuracy"])
    line = (f"epoch {record['epoch']:>{len(str(epochs))}}/{epochs}  loss {record['loss']:.4f}  "
            f"train acc {record['train_accuracy']:.3f}  test acc per step [{accs}]")
    if "clean_accuracy" in record:
        line += f"  clean [{' '.join(f'{a:.3f}' for a in record['clean_accuracy'])}]"
    return line + f"  {record['seconds']:.1f}s"


# --------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------


def save_metrics(history: dict, path) -> str:
    """Write the history (config and per-epoch metrics) as JSON to ``path``; return the path.

    NumPy numbers are written as numbers, and a NaN or infinite value (a diverged loss) as ``null``:
    strict JSON has no NaN.

    The file is written whole or not at all (:func:`minifb.serialization.written_whole`).

    Raises:
        TypeError: ``history`` is not a dict (None, a string, a number); nothing is written then.
        FileNotFoundError: the folder of ``path`` does not exist.
    """
    if not isinstance(history, dict):
        raise TypeError(f"save_metrics: history must be a dict (what fit and train return), "
                        f"got {type(history).__name__}")
    path = os.fspath(path)
    text = json.dumps(_jsonable(history), indent=2, allow_nan=False)   # an unserialisable value fails here,
    with written_whole("save_metrics", path) as tmp:                     # before any file is made
        with open(tmp, "w") as fh:
            fh.write(text)
    return path


def _jsonable(value):
    """``value`` with NumPy scalars and arrays as Python numbers and lists and non-finite floats as None, through
    dicts and lists."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def plot_curves(history: dict, path) -> bool:
    """Draw loss, accuracy per epoch and accuracy against timestep into a PNG.

    Uses matplotlib's object API (no global pyplot state). Returns ``False``
    (writing nothing) when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    epochs = history.get("epochs", [])
    fig = Figure(figsize=(12, 3.6))
    FigureCanvasAgg(fig)
    ax_loss, ax_acc, ax_t = fig.subplots(1, 3)
    e = [r["epoch"] for r in epochs]
    ax_loss.plot(e, [r["loss"] for r in epochs], "o-")
    ax_loss.set(title="training loss (summed over timesteps)", xlabel="epoch", ylabel="loss")
    if epochs:
        steps = len(epochs[0]["test_accuracy"])
        ax_acc.plot(e, [r["train_accuracy"] for r in epochs], "o--", label="train (last step)")
        ax_acc.plot(e, [r["test_accuracy"][-1] for r in epochs], "o-", label=f"test, step {steps}")
        if steps > 1:
            ax_acc.plot(e, [r["test_accuracy"][0] for r in epochs], "o:", label="test, step 1")
        t = np.arange(1, steps + 1)
        for i, r in enumerate(epochs):
            last = i == len(epochs) - 1
            ax_t.plot(t, r["test_accuracy"], "o-" if last else "-", alpha=1.0 if last else 0.25,
                      color="C0", label="test (last epoch)" if last else None)
        if "clean_accuracy" in epochs[-1]:
            ax_t.plot(t, epochs[-1]["clean_accuracy"], "s-", color="C1", label="clean test (last epoch)")
        ax_t.set_xticks(t)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set(title="accuracy", xlabel="epoch", ylabel="accuracy")
    ax_t.set(title="accuracy against timestep", xlabel="timestep", ylabel="accuracy")
    for ax in (ax_acc, ax_t):
        if ax.get_legend_handles_labels()[0]:  # no epochs, no curves: a legend would only warn
            ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=100)
    return True


_RUN_FILES = ("model.npz", "metrics.json", "curves.png")  # what a run writes into ``out``


def _remove_run_files(out) -> None:
    """Delete an earlier run's outputs from ``out``, so none of them can pass for this run's."""
    for name in _RUN_FILES:
        path = os.path.join(out, name)
        if os.path.isfile(path) or os.path.islink(path):
            os.remove(path)


def train_model(model_name="spoerer-BLT", data="digits", corrupt="none", steps=4, epochs=4, batch=32, lr=3e-3,
          optimizer="adam", device="cpu", seed=0, out=None, limit=None, size=None, truncate=None, clip=5.0,
          weight_decay=0.0, features=None, progress=True, log=print, plot=True, history=None):
    """Like :func:`train`, but return ``(net, dataset, history)``: the trained network too."""
    if size is None:
        size = default_size(model_name)
    config = dict(model_name=model_name, data=data, corrupt=str(corrupt).lower(), steps=steps, epochs=epochs,
                  batch=batch, lr=lr, optimizer=str(optimizer).lower(), device=device, seed=seed, size=size,
                  limit=limit, truncate=truncate, clip=clip, weight_decay=weight_decay, features=features)
    # Check the cheap arguments before loading anything (and before removing an earlier run's outputs).
    backend.check_device(device)
    kernels.mode()   # a bad MINIFB_KERNELS fails here, not in the first forward pass
    if str(optimizer).lower() not in OPTIMIZERS:
        raise ValueError(f"train: unknown optimizer {optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
    steps, epochs, _, _, clip, corrupt, seed = _check_schedule("train", steps, epochs, batch, truncate, clip,
                                                               corrupt, seed)
    checks.integer("train", "size", size)
    start = time.perf_counter()
    backend.manual_seed(seed)
    ds = prepare_data(data, size=size, seed=seed, limit=limit)
    net = build_model(model_name, size, classes=ds.classes, channels=ds.image_shape[0],
                      features=features).to(device)
    history = {} if history is None else history
    history.update({"config": config, "parameters": count_parameters(net),
                    "train_images": int(len(ds.x_train)), "test_images": int(len(ds.x_test)), "epochs": []})
    opt = make_optimizer(optimizer, net.parameters(), lr, weight_decay)  # its checks, before anything is removed
    config["weight_decay"] = opt.weight_decay   # what it uses: adamw's 0.01 for 0
    if out is not None:
        os.makedirs(out, exist_ok=True)
        _remove_run_files(out)

    def checkpoint(h):
        save(net, os.path.join(out, "model.npz"))   # written whole: an interrupted save keeps the last one
        h["checkpoint_epoch"] = len(h["epochs"])   # model.npz is this run's, after this many epochs
        h["seconds"] = time.perf_counter() - start
        save_metrics(h, os.path.join(out, "metrics.json"))

    if log is not None:
        log(f"training {model_name} ({history['parameters']:,} parameters) on {data} "
            f"{size}x{size}, {len(ds.x_train)} train / {len(ds.x_test)} test images, "
            f"T={steps} steps, corruption {corrupt}, {epochs} epoch{'' if epochs == 1 else 's'}, device {device}")
    try:
        fit(net, ds, steps=steps, epochs=epochs, batch=batch, lr=lr, optimizer=optimizer, seed=seed,
            corrupt=corrupt, truncate=truncate, clip=clip, weight_decay=weight_decay, progress=progress,
            log=log, on_epoch=checkpoint if out is not None else None, history=history)
    except KeyboardInterrupt:
        history["interrupted"] = True
        if out is not None:
            history["seconds"] = time.perf_counter() - start
            save_metrics(history, os.path.join(out, "metrics.json"))
        raise
    if history["epochs"]:
        last = history["epochs"][-1]
        history["final"] = {k: last[k] for k in ("test_accuracy", "clean_accuracy") if k in last}
    else:  # no training: score the untrained network as fit scores every epoch
        history["final"] = {"test_accuracy": evaluate(net, *_test_set(ds, corrupt, seed), steps)}
        if corrupt != "none":
            history["final"]["clean_accuracy"] = evaluate(net, ds.x_test, ds.y_test, steps)
    history["seconds"] = time.perf_counter() - start
    if out is not None:
        checkpoint(history)
        if plot and not plot_curves(history, os.path.join(out, "curves.png")) and log is not None:
            log("note: matplotlib is not installed, so curves.png was not written "
                "(pip install matplotlib)")
    return net, ds, history


def train(model_name="spoerer-BLT", data="digits", corrupt="none", steps=4, epochs=4, batch=32, lr=3e-3,
          optimizer="adam", device="cpu", seed=0, out=None, limit=None, size=None, truncate=None, clip=5.0,
          weight_decay=0.0, features=None, progress=True, log=print, plot=True, history=None) -> dict:
    """Train a model with the recurrent protocol: what ``minifb train`` runs.

    Builds ``model_name`` for ``size x size`` images, loads ``data``, trains
    with :func:`fit` and, when ``out`` is given, writes after every epoch
    ``out/model.npz`` (the weights, :func:`minifb.save`) and
    ``out/metrics.json`` (the config and the per-epoch metrics), and at the
    end ``out/curves.png`` (when matplotlib is installed); those files of an
    earlier run in ``out`` are removed when training starts, so every file
    there is this run's. ``"checkpoint_epoch"`` in the history tells how many
    epochs the weights in ``model.npz`` have had. On Ctrl-C the last
    checkpoint is kept, the metrics so far are written with
    ``"interrupted": true`` and the ``KeyboardInterrupt`` is re-raised.
    :func:`train_model` does the same and also returns the trained network.

    Args:
        model_name: a name in :data:`minifb.models.MODEL_NAMES`.
        data: ``"digits"`` (shipped) or ``"mnist:DIR"``.
        corrupt: training (and test) corruption: ``none``, ``noise``,
            ``saltpepper``, ``debris`` or ``clutter`` (multi-label).
        steps: timesteps ``T`` per image.
        epochs: passes over the training set (0 only evaluates).
        batch: images per batch.
        lr: peak learning rate (cosine-decayed towards ``lr / 20``; see :func:`fit`).
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        device: ``cpu`` or ``cuda``.
        seed: seeds the initialisation, the shuffles and the corruptions.
        out: a directory for the outputs (created), or ``None``.
        limit: keep only the first ``limit`` training and test images.
        size: image side; ``None``: :func:`default_size` (16 for Spoerer models;
            28, their design size, for LeNet models).
        truncate: detach the state every ``truncate`` steps, at most ``steps``
            (``None``: full BPTT).
        clip: global gradient-norm clip (``None``: off).
        weight_decay: L2 penalty (decoupled for ``adamw``, which takes 0 as
            0.01: ``config["weight_decay"]`` records the value used).
        features: feature maps per layer of a Spoerer model (``None``: 32).
        progress: tqdm progress bar when installed.
        log: per-epoch lines go here (``None``: silent).
        plot: write ``curves.png`` when ``out`` is given.
        history: a dict to fill in and return instead of a new one, so that a
            caller still has it when Ctrl-C interrupts the run.

    Returns:
        The history: ``{"config": {...}, "parameters": int, "train_images",
        "test_images", "epochs": [{"epoch", "loss", "train_accuracy",
        "test_accuracy" (one per timestep), "lr", "seconds"}, ...],
        "final": {"test_accuracy": [...], "clean_accuracy": [...] (with a
        corruption)}, "seconds": float}``, and with ``out`` ``"checkpoint_epoch"``.

    Raises:
        ValueError: a bad argument (unknown model, data spec, corruption,
            optimizer; non-positive steps/batch/lr; negative epochs; truncate
            larger than steps), or a bad ``MINIFB_KERNELS``; all found before
            anything in ``out`` is removed.
        FileNotFoundError: missing MNIST files.

    Example:
        >>> from minifb.train import train
        >>> h = train("spoerer-BT", epochs=1, limit=200, progress=False, log=None)
        >>> len(h["final"]["test_accuracy"])
        4
    """
    return train_model(model_name=model_name, data=data, corrupt=corrupt, steps=steps, epochs=epochs,
                       batch=batch, lr=lr, optimizer=optimizer, device=device, seed=seed, out=out, limit=limit,
                       size=size, truncate=truncate, clip=clip, weight_decay=weight_decay, features=features,
                       progress=progress, log=log, plot=plot, history=history)[2]
