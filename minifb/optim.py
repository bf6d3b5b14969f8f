"""Optimisers and gradient clipping, with PyTorch's exact update rules.

An optimiser holds a list of parameter tensors.  After ``loss.backward()`` has
filled their ``.grad``, :meth:`Optimizer.step` updates each parameter's
``.data`` **in place** from its ``.grad``, using the array module of the data
(NumPy or CuPy), so the same optimiser runs on the CPU and on a GPU.
Parameters whose ``.grad`` is ``None`` (no gradient reached them) are skipped,
and their optimiser state is left as it was.  A ``.grad`` is a backend array,
as ``backward`` leaves it; one set by hand must be one too (``p.grad = t.data``,
not the Tensor ``t``), or ``step`` and ``clip_grad_norm`` refuse it.

Typical loop::

    opt = optim.Adam(net.parameters(), lr=1e-3)
    for x, y in batches:
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        optim.clip_grad_norm(net.parameters(), 1.0)   # optional
        opt.step()

Hyperparameters are plain attributes (``opt.lr = 0.01`` changes the learning
rate for the following steps, which is all a learning-rate schedule needs).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import backend, checks, cpu_conv, kernels
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm", "clip_grad_norm_"]


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------
def _param_list(params, owner: str) -> list:
    """Turn ``params`` (any iterable of Tensors) into a checked list."""
    if isinstance(params, Tensor):
        raise TypeError(f"{owner}: params must be an iterable of Tensors (e.g. model.parameters()), "
                        f"got a single Tensor of shape {params.shape}; wrap it in a list")
    if hasattr(params, "parameters") and callable(params.parameters) and not isinstance(params, (list, tuple)):
        raise TypeError(f"{owner}: params must be an iterable of Tensors; "
                        f"pass model.parameters(), not the {type(params).__name__} itself")
    try:
        params = list(params)
    except TypeError:
        raise TypeError(f"{owner}: params must be an iterable of Tensors, got {type(params).__name__}") from None
    if not params:
        raise ValueError(f"{owner}: got an empty parameter list")
    seen = set()
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{owner}: params[{i}] is a {type(p).__name__}, expected a Tensor")
        if np.dtype(p.dtype).kind != "f":
            raise TypeError(f"{owner}: params[{i}] has dtype {p.dtype}; only floating-point tensors can be optimised")
        if id(p) in seen:
            raise ValueError(f"{owner}: params[{i}] (shape {p.shape}) appears more than once in the parameter list")
        seen.add(id(p))
    return params


def _check_writable(owner: str, i: int, p) -> None:
    """Refuse a parameter on a read-only array (a broadcast view, say): an optimiser updates it in place."""
    if not backend.is_writable(p.data):
        raise ValueError(f"{owner}: params[{i}] (shape {p.data.shape}) is a read-only array; an optimiser "
                         "updates parameters in place, so give it a writable copy (e.g. Parameter(array.copy()))")


def _is_array(value) -> bool:
    """Whether ``value`` is a backend array (a NumPy or CuPy ndarray) of real numbers (bool, integer or float),
    or a NumPy scalar (what NumPy gives for arithmetic on 0-d arrays: a 0-d parameter's gradient).

    A Tensor or a list is not: an optimiser and ``clip_grad_norm`` change gradients and state in place,
    and ``a -= b`` on anything but an array rebinds a name and changes nothing.
    """
    return (isinstance(value, np.generic) or backend.is_array(value)) and np.dtype(value.dtype).kind in "biuf"


def _check_grad(owner: str, i: int, p) -> None:
    """Refuse a ``p.grad`` (of ``params[i]``, not None) that is not a backend array of real numbers.

    ``.grad`` is a backend array (DESIGN: the ``Tensor`` contract), never a Tensor: one set by hand must be
    one too, ``p.grad = t.data`` rather than ``p.grad = t``.
    """
    g = p.grad
    if _is_array(g):
        return
    if hasattr(g, "dtype") and hasattr(g, "shape") and not isinstance(g, Tensor):
        raise TypeError(f"{owner}: params[{i}].grad must be an array of real numbers of shape {p.data.shape}, "
                        f"got dtype {g.dtype}")
    hint = "; set p.grad = t.data (a Tensor's backend array), not the Tensor" if isinstance(g, Tensor) else ""
    raise TypeError(f"{owner}: params[{i}].grad must be an array of shape {p.data.shape}, "
                    f"got {type(g).__name__}{hint}")


def _betas(owner: str, betas) -> tuple:
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}") from None
    return (checks.number(owner, "betas[0]", b1, at_least=0, below=1, finite=True),
            checks.number(owner, "betas[1]", b2, at_least=0, below=1, finite=True))


def _follow_device(state: dict, w) -> None:
    """Move state buffers to ``w``'s device (the model was moved with ``.to(device)`` after some steps)."""
    device = backend.device_of(w)
    for k, v in state.items():
        if hasattr(v, "shape") and backend.device_of(v) != device:
            state[k] = backend.to_device(v, device)


def _fused(g, *inplace) -> bool:
    """Whether to update with a fused optimiser kernel: the kernels are on for the gradient ``g`` and the
    buffers, all float32 (:func:`minifb.kernels.should_use`), and every buffer updated in place (the
    parameter, its state) is C-contiguous; ``None`` entries (a state not made yet) are ignored."""
    inplace = [a for a in inplace if a is not None]
    return kernels.should_use(g, *inplace) and all(a.flags.c_contiguous for a in inplace)


class _FlatParameters:
    """All parameters (and their optimiser state) packed into flat buffers, for one-launch updates.

    Packing *replaces* each parameter's ``.data`` with a reshaped view into
    ``self.data`` (the values are copied), and each per-parameter state array
    with a view into its flat buffer, so updating the flat buffers updates the
    parameters and ``state_dict`` sees the same values.  An array taken from
    ``.data`` (or ``detach()``, or a state array) before the packing is the old
    array: it keeps the values it had and no longer follows the parameter.  One
    taken after it is (a view of) the flat buffer and follows every later step.
    If anything replaces a parameter's array or a state array (``module.to``,
    loading weights, ``Optimizer.load_state_dict``), :meth:`intact` notices and
    the optimiser packs again, copying the values (and again replacing the
    arrays).

    Attributes:
        fresh: one flag per parameter, True where it had none of the state
            buffers yet (they start as zeros here); the optimiser's first flat
            update reads and clears them.
    """

    def __init__(self, params, states, keys):
        xp = backend.array_module(params[0].data)
        sizes = [p.data.size for p in params]
        self.keys = tuple(keys)
        self.data = xp.concatenate([p.data.reshape(-1) for p in params])
        self.buffers = {}
        for key in keys:
            self.buffers[key] = xp.concatenate(
                [s[key].reshape(-1) if key in s else xp.zeros(n, dtype=np.float32) for s, n in zip(states, sizes)])
        self.fresh = [bool(keys) and not any(key in s for key in keys) for s in states]
        self.bounds, self.views, self.state_views, start = [], [], [], 0
        for p, s, n in zip(params, states, sizes):
            p.data = self.data[start:start + n].reshape(p.data.shape)
            for key in keys:
                s[key] = self.buffers[key][start:start + n].reshape(p.data.shape)
            self.bounds.append((start, start + n))
            self.views.append(p.data)
            self.state_views.append(tuple(s[key] for key in keys))
            start += n

    def runs(self):
        """Split the flat range into maximal runs of parameters that agree on ``fresh``.

        Returns:
            A list of ``(start, stop, fresh)``; one entry when every parameter
            agrees, which is the usual case (one kernel launch).
        """
        runs = []
        for (start, stop), fresh in zip(self.bounds, self.fresh):
            if runs and runs[-1][2] == fresh:
                runs[-1] = (runs[-1][0], stop, fresh)
            else:
                runs.append((start, stop, fresh))
        return runs

    def intact(self, params, states) -> bool:
        """Whether every parameter and every state buffer still lives in these flat buffers."""
        return (len(params) == len(self.views) == len(states)
                and all(p.data is v for p, v in zip(params, self.views))
                and all(s.get(key) is v for s, views in zip(states, self.state_views)
                        for key, v in zip(self.keys, views)))


# ---------------------------------------------------------------------------
# the base class
# ---------------------------------------------------------------------------
class Optimizer:
    """Base class: a list of parameters, per-parameter state, ``zero_grad`` and ``step``.

    Subclasses set their hyperparameters as attributes, list their names in
    ``hyperparameters`` and implement :meth:`update` for one parameter; one
    whose hyperparameters have bounds checks them in ``_check_hyperparameters``
    (as SGD and Adam do), so that :meth:`load_state_dict` checks loaded ones too;
    one that names its per-parameter state in :attr:`state_keys` (as SGD and
    Adam do) has each loaded state checked against it.

    Args:
        params: an iterable of float :class:`~minifb.Tensor` (e.g.
            ``model.parameters()``); each may appear only once.

    Attributes:
        params: the list of parameter tensors.
        state: one dict per parameter (momentum buffers, moment estimates,
            step counts), filled lazily on the parameter's first update.

    Example (plain gradient descent with a decaying step, as SGD and Adam are written):
        >>> class Decaying(optim.Optimizer):
        ...     hyperparameters = ("lr",)
        ...     def __init__(self, params, lr):
        ...         self.lr = lr
        ...         super().__init__(params)
        ...     def update(self, w, g, state):              # raw arrays; update w in place
        ...         state["t"] = state.get("t", 0) + 1
        ...         w -= self.lr / state["t"] * g
        >>> w = nn.Parameter(np.ones(2, np.float32))
        >>> opt = Decaying([w], lr=0.5)
        >>> (w * w).sum().backward(); opt.step()
        >>> w.numpy()
        array([0., 0.], dtype=float32)
    """

    hyperparameters: tuple = ()

    #: What one parameter's state holds once the parameter has been updated, for :meth:`load_state_dict`
    #: to check: ``{key: "array"}`` for a buffer of the parameter's shape, ``{key: "step"}`` for an
    #: integer count >= 0. A loaded state has all of these keys or none (a parameter not updated yet).
    #: ``None`` (this base class, and a subclass that does not say): loaded states are not checked.
    state_keys: dict | None = None

    def __init__(self, params):
        self.params = _param_list(params, type(self).__name__)
        self.state = [{} for _ in self.params]
        self._flat = None  # the fused path's flat buffers, packed on its first step

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (sets ``p.grad = None``)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient, in place.

        Each updated parameter's version counter goes up, so a ``backward()``
        through a graph recorded before the step is refused rather than run
        on the new values (see :meth:`minifb.Tensor.backward`).

        With the kernels on (CuPy float32 arrays, or NumPy float32 under
        ``kernels.use("emulate")``) and every parameter holding a float32
        gradient, SGD, Adam and AdamW update all parameters with one launch
        over a flat buffer.  The first such step copies the parameters into
        that buffer and **replaces** each parameter's ``.data`` (and its state
        arrays in :attr:`state`) with a view into it; it does so again after
        ``module.to``, loading weights or :meth:`load_state_dict` replaced any
        of those arrays.  So an array taken from ``p.data`` or ``p.detach()``
        before that step keeps the old values and no longer shares memory with
        the parameter; one taken after it shares memory and follows the later
        steps.  Otherwise (kernels off, or a step that updates parameter by
        parameter) ``.data`` is updated in place and stays the same array.

        Raises:
            TypeError: a parameter's ``.grad`` is not a backend array of real
                numbers: a list, a string, or a Tensor (``.grad`` is an
                array, as ``backward`` leaves it: set ``p.grad = t.data``).
            ValueError: a parameter's ``.grad`` does not have its shape, or
                its ``.data`` has become a read-only array.  Every parameter
                is checked before any is updated, so nothing changes then.
        """
        owner = f"{type(self).__name__}.step"
        for i, p in enumerate(self.params):   # check them all first: an error leaves every parameter as it was
            g = p.grad
            if g is None:
                continue
            _check_grad(owner, i, p)
            if g.shape != p.data.shape:
                raise ValueError(f"{owner}: params[{i}] has shape {p.data.shape} but its grad has shape {g.shape}")
            _check_writable(owner, i, p)
        # KERNEL HOOK: optim -- on CuPy float32 (or under ``kernels.use("emulate")``) every parameter is
        # updated by ONE fused launch over a flat buffer that holds all of them (kernels/optim.cu, see
        # ``_FlatParameters``); the per-parameter array code below stays as the reference.
        if self._step_flat():
            for p in self.params:
                p._version += 1  # an in-place update: graphs recorded before it can no longer backward
            return
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None:
                continue
            state = self.state[i]
            if state:
                _follow_device(state, p.data)
            self.update(p.data, g, state)
            p._version += 1

    def update(self, w, g, state: dict) -> None:  # pragma: no cover - interface
        """Update the raw array ``w`` in place from its gradient ``g`` and its ``state``."""
        raise NotImplementedError

    # ---- the fused path: one kernel launch for all parameters ------------------
    flat_state_keys: tuple = ()  # per-parameter state arrays that the flat path keeps in flat buffers
    fused_flat = False           # whether update_flat exists

    def _step_flat(self) -> bool:
        """Update all parameters with one fused kernel launch, when possible; return whether it ran.

        Needs every parameter to have a gradient of its shape and writable data, the kernels to be
        on for all parameters and gradients (every one float32, see
        :func:`minifb.kernels.should_use`), and (for Adam) the same step count
        everywhere; otherwise the per-parameter path runs, which updates a
        parameter whose gradient is of another dtype as the kernels-off path does.
        """
        if not self.fused_flat:
            return False
        if any(getattr(p.grad, "shape", None) != p.data.shape for p in self.params):
            return False    # a missing gradient, or one of another shape or type: the checked per-parameter path
        if not all(backend.is_writable(p.data) for p in self.params):
            return False    # a read-only parameter: the per-parameter path refuses it (packing would hide it)
        if not kernels.should_use(*(p.data for p in self.params), *(p.grad for p in self.params)):
            return False
        if len({s.get("step", 0) for s in self.state}) > 1:
            return False
        flat, keys = self._flat, tuple(self.flat_state_keys)
        if flat is None or flat.keys != keys or not flat.intact(self.params, self.state):
            for p, state in zip(self.params, self.state):
                _follow_device(state, p.data)   # the model may have moved since the state was made or loaded
            flat = self._flat = _FlatParameters(self.params, self.state, keys)
        xp = backend.array_module(flat.data)
        grad = xp.concatenate([p.grad.reshape(-1) for p in self.params])
        self.update_flat(flat.data, grad, flat)
        return True

    def update_flat(self, w, g, flat) -> None:  # pragma: no cover - interface
        """Update the flat buffer ``w`` of all parameters in one kernel launch."""
        raise NotImplementedError

    # ---- checkpointing ---------------------------------------------------
    def state_dict(self) -> dict:
        """The hyperparameters and a copy of the per-parameter state.

        Returns:
            ``{"type": class name, "hyperparameters": {name: value},
            "state": [dict per parameter]}``; arrays are NumPy copies.
        """
        state = [{k: (backend.to_numpy(v).copy() if hasattr(v, "shape") else v) for k, v in s.items()}
                 for s in self.state]
        return {"type": type(self).__name__,
                "hyperparameters": {k: getattr(self, k) for k in self.hyperparameters},
                "state": state}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` returned (arrays go to each parameter's device).

        The loaded hyperparameters are checked as the constructor checks them;
        nothing changes unless the whole dict is accepted.

        Raises:
            TypeError: ``state_dict`` is not a dict, or its ``"state"`` is not a
                list of dicts, or a hyperparameter is not a number, or a
                buffer of ``state[i]`` is not an array (a list, say).
            ValueError: the dict is for another optimiser type, has no
                ``"type"`` or ``"state"``, is for another number of parameters, holds a buffer
                whose shape differs from its parameter's, a ``state[i]`` with
                other keys than the optimiser's :attr:`state_keys` (a missing
                ``exp_avg_sq``, an unknown key) or a step count that is not an
                integer >= 0, or a hyperparameter that the constructor would refuse.
        """
        name = type(self).__name__
        owner = f"{name}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{owner}: expected a dict as {name}.state_dict() returns, "
                            f"got {type(state_dict).__name__}")
        missing = [repr(k) for k in ("type", "state") if k not in state_dict]
        if missing:
            raise ValueError(f"{owner}: the dict has no {' or '.join(missing)} entry; expected what "
                             f"{name}.state_dict() returns, got keys {sorted(map(str, state_dict))}")
        if state_dict["type"] != name:
            raise ValueError(f"{owner}: the state is for {state_dict['type']!r}, not {name!r}")
        states = state_dict["state"]
        if not isinstance(states, (list, tuple)):
            raise TypeError(f"{owner}: 'state' must be a list with one dict per parameter, "
                            f"got {type(states).__name__}")
        for i, s in enumerate(states):
            if not isinstance(s, dict):
                raise TypeError(f"{owner}: state[{i}] must be a dict, got {type(s).__name__}")
        if len(states) != len(self.params):
            raise ValueError(f"{owner}: the state has {len(states)} parameters, "
                             f"this optimiser has {len(self.params)}")
        hyper = state_dict.get("hyperparameters", {})
        if not isinstance(hyper, dict):
            raise TypeError(f"{owner}: 'hyperparameters' must be a dict, got {type(hyper).__name__}")
        new = [self._loaded_state(owner, i, p, s) for i, (p, s) in enumerate(zip(self.params, states))]
        values = {k: getattr(self, k) for k in self.hyperparameters}
        values.update({k: tuple(v) if isinstance(v, list) else v for k, v in hyper.items()
                       if k in self.hyperparameters})
        self._set_hyperparameters(owner, **values)
        self.state = new
        self._flat = None  # the flat buffers hold the old state: pack again from the loaded one

    def _loaded_state(self, owner: str, i: int, p, s: dict) -> dict:
        """The loaded state ``s`` of ``params[i]`` as the optimiser keeps it (arrays copied to ``p``'s device
        and dtype, a step count as an int), checked against :attr:`state_keys`.

        Raises:
            ValueError: ``s`` has a key the optimiser does not keep, lacks one of its keys (and is not
                empty), holds a buffer of another shape than ``p``'s, or a step count that is not an
                integer >= 0 (``2.5``, ``-1``, ``"3"``).
            TypeError: a buffer is not an array of real numbers (a list, a string).
        """
        keys = self.state_keys
        if keys is not None and s:
            unknown = [k for k in s if k not in keys]
            missing = [k for k in keys if k not in s]
            if unknown or missing:
                what = f"unknown key(s) {unknown}" if unknown else f"no {' or '.join(map(repr, missing))}"
                raise ValueError(f"{owner}: state[{i}] has {what}; {type(self).__name__} keeps {list(keys)} "
                                 "per parameter (or nothing, for a parameter not updated yet)")
        entry = {}
        for k, v in s.items():
            kind = None if keys is None else keys[k]
            if kind == "step":
                v = checks.integer(owner, f"state[{i}][{k!r}]", v, minimum=0)
            elif kind == "array" or hasattr(v, "shape"):
                if kind == "array" and not _is_array(v):
                    got = f"dtype {v.dtype}" if hasattr(v, "dtype") and hasattr(v, "shape") else type(v).__name__
                    raise TypeError(f"{owner}: state[{i}][{k!r}] must be an array of real numbers of shape "
                                    f"{p.data.shape}, got {got}")
                if tuple(v.shape) != p.data.shape:
                    raise ValueError(f"{owner}: state[{i}][{k!r}] has shape {tuple(v.shape)}, "
                                     f"params[{i}] has shape {p.data.shape}")
                v = backend.to_device(np.asarray(backend.to_numpy(v), dtype=p.dtype), p.device).copy()
            entry[k] = v
        return entry

    def _check_hyperparameters(self, owner: str, **values) -> dict:
        """The hyperparameters ``values`` as the optimiser keeps them, checked (``owner`` names the caller
        in the messages); a subclass with bounds on its hyperparameters overrides this, and its
        constructor sets what it returns. This base version accepts anything."""
        return values

    def _set_hyperparameters(self, owner: str, **values) -> None:
        """Check ``values`` with :meth:`_check_hyperparameters`, then set them all as attributes."""
        for k, v in self._check_hyperparameters(owner, **values).items():
            setattr(self, k, v)

    def __repr__(self):
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.hyperparameters)
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"


# ---------------------------------------------------------------------------
# SGD
# ---------------------------------------------------------------------------
class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    PyTorch's rule, for gradient ``g`` of parameter ``w`` at step ``t``::

        g = g + weight_decay * w                      (if weight_decay)
        b = g                          at t = 1      (if momentum)
        b = momentum * b + (1 - dampening) * g   for t > 1
        g = g + momentum * b   if nesterov else   g = b
        w = w - lr * g

    Args:
        params: iterable of parameter Tensors.
        lr: learning rate, >= 0.
        momentum: momentum factor, >= 0 (0 disables the buffer).
        weight_decay: L2 penalty coefficient, >= 0.
        dampening: dampening of the momentum, >= 0 (this and ``nesterov`` are
            keyword-only, as their order differs between libraries).
        nesterov: use Nesterov momentum (needs momentum > 0 and dampening = 0).

    On NumPy arrays (float32 or float64, C-contiguous) the rule runs in one
    compiled pass over each parameter (:func:`minifb.cpu_conv.sgd_step`, with
    the compiled CPU library :func:`~minifb.cpu_conv.enabled`), rounding every
    operation as NumPy does; otherwise as NumPy array operations.

    Example:
        >>> net = nn.Dense(3, 1)
        >>> opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        >>> loss = (net(mf.randn(4, 3)) ** 2).mean()
        >>> opt.zero_grad(); loss.backward(); opt.step()
        >>> optim.SGD(net.parameters(), 0.1, 0.9, 1e-4)   # lr, momentum, weight_decay
        SGD(2 parameters, lr=0.1, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.0001)
    """

    hyperparameters = ("lr", "momentum", "dampening", "nesterov", "weight_decay")
    state_keys = {"momentum_buffer": "array"}   # with momentum, from the first update on

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, *, dampening=0.0, nesterov=False):
        self._set_hyperparameters(type(self).__name__, lr=lr, momentum=momentum, dampening=dampening,
                                  nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params)

    def _check_hyperparameters(self, owner, lr, momentum, dampening, nesterov, weight_decay):
        """SGD's hyperparameters, checked (see :meth:`Optimizer._check_hyperparameters`)."""
        hyper = dict(lr=checks.number(owner, "lr", lr, at_least=0, finite=True),
                     momentum=checks.number(owner, "momentum", momentum, at_least=0, finite=True),
                     dampening=checks.number(owner, "dampening", dampening, at_least=0, finite=True),
                     nesterov=checks.flag(owner, "nesterov", nesterov),
                     weight_decay=checks.number(owner, "weight_decay", weight_decay, at_least=0, finite=True))
        if hyper["nesterov"] and (hyper["momentum"] <= 0 or hyper["dampening"] != 0):
            raise ValueError(f"{owner}: nesterov=True needs momentum > 0 and dampening = 0, "
                             f"got momentum={hyper['momentum']}, dampening={hyper['dampening']}")
        return hyper

    def update(self, w, g, state):
        """Apply the SGD rule to one raw array ``w`` (in place) from its gradient ``g`` and ``state``."""
        buf = state.get("momentum_buffer")
        if _fused(g, w, buf):
            xp = backend.array_module(w)
            first = buf is None
            if self.momentum and first:
                buf = state["momentum_buffer"] = xp.empty_like(w)   # the kernel writes it on the first step
            kernels.sgd_update(w, g, buf if self.momentum else xp.empty(1, dtype=np.float32), self.lr,
                               self.momentum, self.dampening, self.weight_decay, self.nesterov, first_step=first)
            return
        if cpu_conv.sgd_applies(w, g, buf):   # NumPy arrays: one compiled pass instead of NumPy's two to five
            first = buf is None
            if self.momentum and first:
                buf = state["momentum_buffer"] = np.empty_like(w)   # written on the first step
            cpu_conv.sgd_step(w, g, buf, self.lr, self.momentum, self.dampening, self.weight_decay,
                              self.nesterov, first_step=first)
            return
        xp = backend.array_module(w)
        if self.weight_decay:
            g = g + self.weight_decay * w
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                # xp.array, not g.copy(): with a 0-d weight, ``g + wd * w`` is a NumPy scalar, and the
                # in-place updates below would rebind a scalar instead of changing the stored buffer
                buf = state["momentum_buffer"] = xp.array(g, dtype=w.dtype, copy=True)
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        w -= self.lr * g

    fused_flat = True

    @property
    def flat_state_keys(self):
        """``("momentum_buffer",)`` when momentum is on, else ``()``: the state the flat path packs."""
        return ("momentum_buffer",) if self.momentum else ()

    def update_flat(self, w, g, flat):
        """Apply the SGD rule to the flat buffer ``w`` of all parameters from the flat gradient ``g``.

        Parameters without a momentum buffer yet (``flat.fresh``) take ``b = g``
        as on their first step; one launch covers each run of parameters that
        agree on that, so usually the whole buffer.
        """
        xp = backend.array_module(w)
        for start, stop, first in flat.runs():
            buf = flat.buffers["momentum_buffer"][start:stop] if self.momentum else xp.empty(1, np.float32)
            kernels.sgd_update(w[start:stop], g[start:stop], buf, self.lr, self.momentum, self.dampening,
                               self.weight_decay, self.nesterov, first_step=first)
        flat.fresh = [False] * len(flat.fresh)


# ---------------------------------------------------------------------------
# Adam and AdamW
# ---------------------------------------------------------------------------
class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction, as PyTorch computes it.

    For gradient ``g`` of parameter ``w`` at step ``t`` (counted per parameter)::

        g = g + weight_decay * w                         (L2 penalty, if weight_decay)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        w = w - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Args:
        params: iterable of parameter Tensors.
        lr: learning rate, >= 0.
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: term added to the denominator, >= 0.
        weight_decay: L2 penalty added to the gradient, >= 0 (see :class:`AdamW`
            for decoupled weight decay).

    Example:
        >>> net = nn.Dense(3, 1)
        >>> opt = optim.Adam(net.parameters(), lr=1e-3)
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    state_keys = {"step": "step", "exp_avg": "array", "exp_avg_sq": "array"}
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self._set_hyperparameters(type(self).__name__, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params)

    def _check_hyperparameters(self, owner, lr, betas, eps, weight_decay):
        """Adam's hyperparameters, checked (see :meth:`Optimizer._check_hyperparameters`)."""
        return dict(lr=checks.number(owner, "lr", lr, at_least=0, finite=True),
                    betas=_betas(owner, betas),
                    eps=checks.number(owner, "eps", eps, at_least=0, finite=True),
                    weight_decay=checks.number(owner, "weight_decay", weight_decay, at_least=0, finite=True))

    def update(self, w, g, state):
        """Apply the Adam rule to one raw array ``w`` (in place) from its gradient ``g`` and ``state``."""
        xp = backend.array_module(w, g)
        beta1, beta2 = self.betas
        weight_decay = self.weight_decay
        if weight_decay and self.decoupled:
            w *= 1.0 - self.lr * weight_decay
            weight_decay = 0.0
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(w)
            state["exp_avg_sq"] = xp.zeros_like(w)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if _fused(g, w, m, v):
            kernels.adam_update(w, g, m, v, self.lr, beta1, beta2, self.eps, weight_decay, t)
            return
        if weight_decay:
            g = g + weight_decay * w
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * g * g  # left to right, as PyTorch: g * g alone can overflow float32
        step_size = self.lr / (1.0 - beta1 ** t)
        denom = xp.sqrt(v)
        denom /= math.sqrt(1.0 - beta2 ** t)
        denom += self.eps
        w -= step_size * (m / denom)

    flat_state_keys = ("exp_avg", "exp_avg_sq")
    fused_flat = True

    def update_flat(self, w, g, flat):
        """Apply the Adam rule to the flat buffer ``w`` of all parameters (one shared step count)."""
        weight_decay = self.weight_decay
        if weight_decay and self.decoupled:
            w *= 1.0 - self.lr * weight_decay
            weight_decay = 0.0
        step = self.state[0].get("step", 0) + 1  # read each time: a per-parameter step may have run since
        for s in self.state:
            s["step"] = step
        kernels.adam_update(w, g, flat.buffers["exp_avg"], flat.buffers["exp_avg_sq"], self.lr, self.betas[0],
                            self.betas[1], self.eps, weight_decay, step)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as PyTorch computes it.

    Identical to :class:`Adam` with ``weight_decay=0``, except that before the
    Adam step the parameter shrinks: ``w = w * (1 - lr * weight_decay)``.

    Args:
        params: iterable of parameter Tensors.
        lr: learning rate, >= 0.
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: term added to the denominator, >= 0.
        weight_decay: decoupled weight decay coefficient, >= 0 (default 0.01).

    Example:
        >>> net = nn.Dense(3, 1)
        >>> opt = optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)
    """

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# ---------------------------------------------------------------------------
# gradient clipping
# ---------------------------------------------------------------------------
def clip_grad_norm(params, max_norm, norm_type=2.0, error_if_nonfinite=False) -> float:
    """Scale all gradients together so that their joint norm is at most ``max_norm``.

    As PyTorch's ``clip_grad_norm_``: the total norm is the norm of the vector of
    all gradients concatenated (``sqrt(sum_p ||g_p||**2)`` for ``norm_type=2``,
    ``max_p max|g_p|`` for ``inf``); then every gradient is multiplied in place
    by ``min(1, max_norm / (total_norm + 1e-6))``.  Parameters without a
    gradient are skipped.

    Args:
        params: an iterable of Tensors (``model.parameters()``), or one Tensor.
        max_norm: the largest allowed total norm, >= 0, or ``float("inf")`` to
            only measure the norm (gradients with a finite norm are left unchanged).
        norm_type: ``p`` of the p-norm (> 0), or ``float("inf")``.
        error_if_nonfinite: raise if the total norm is NaN or infinite
            (otherwise the gradients are scaled by a NaN/0 factor, as PyTorch does).

    Returns:
        The total norm of the gradients before clipping, a Python float
        (0.0 when no parameter has a gradient).

    Raises:
        TypeError: ``params`` is neither a Tensor nor an iterable of Tensors
            (a Module itself, say: pass ``model.parameters()``),
            ``error_if_nonfinite`` is not a bool, or a ``.grad`` is not a
            backend array of real numbers (a Tensor: set ``p.grad = t.data``).
        ValueError: ``max_norm`` is negative or NaN, ``norm_type`` is not
            positive, or a gradient that must be scaled is a read-only array
            (no gradient is changed then).
        RuntimeError: ``error_if_nonfinite`` is True and the total norm is
            NaN or infinite (no gradient is changed then).

    Example:
        >>> net = nn.Dense(3, 1)
        >>> (net(mf.randn(4, 3)) ** 2).mean().backward()
        >>> norm = optim.clip_grad_norm(net.parameters(), max_norm=1.0)
        >>> bool(norm > 0)
        True
    """
    if isinstance(params, Tensor):
        params = [params]
    if hasattr(params, "parameters") and callable(params.parameters) and not isinstance(params, (list, tuple)):
        raise TypeError("clip_grad_norm: params must be a Tensor or an iterable of Tensors; "
                        f"pass model.parameters(), not the {type(params).__name__} itself")
    try:
        params = list(params)
    except TypeError:
        raise TypeError("clip_grad_norm: params must be a Tensor or an iterable of Tensors, "
                        f"got {type(params).__name__}") from None
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"clip_grad_norm: params[{i}] is a {type(p).__name__}, expected a Tensor")
    max_norm = checks.number("clip_grad_norm", "max_norm", max_norm, at_least=0)   # inf: measure only
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real) or not norm_type > 0:
        raise ValueError(f"clip_grad_norm: norm_type must be a positive number or inf, got {norm_type!r}")
    norm_type = float(norm_type)
    error_if_nonfinite = checks.flag("clip_grad_norm", "error_if_nonfinite", error_if_nonfinite)
    for i, p in enumerate(params):
        if p.grad is not None:
            _check_grad("clip_grad_norm", i, p)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    xp = backend.array_module(*grads)
    # one device-to-host transfer for the total, not one per parameter
    if math.isinf(norm_type):
        parts = [xp.abs(g).max() for g in grads if g.size]
        total = float(xp.stack(parts).max()) if parts else 0.0
    else:
        total = float(sum((xp.abs(g).astype(np.float64) ** norm_type).sum() for g in grads)) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm: the total norm of order {norm_type} of the gradients is {total}")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0 or not math.isfinite(total):
        for i, p in enumerate(params):   # all checked before any is scaled
            g = p.grad
            if g is not None and np.dtype(g.dtype).kind != "f":
                raise TypeError(f"clip_grad_norm: params[{i}].grad has dtype {g.dtype}; only floating-point "
                                "gradients can be scaled")
            if g is not None and not isinstance(g, np.generic) and not backend.is_writable(g):
                raise ValueError(f"clip_grad_norm: params[{i}].grad (shape {g.shape}) is a read-only array; "
                                 "clip_grad_norm scales the gradients in place, so give it a writable copy")
        for p in params:
            if isinstance(p.grad, np.generic):    # a NumPy scalar cannot change in place: ``g *= coef`` rebinds
                p.grad = np.asarray(p.grad * coef)
            elif p.grad is not None:
                p.grad *= coef
    return total


clip_grad_norm_ = clip_grad_norm  # PyTorch's spelling (it works in place either way)
