"""Recurrence: Recur, the RNN/LSTM/GRU/ConvLSTM cells, and unroll.

A *cell* is any callable of the form ``state, y = cell(state, x)``: one
timestep mapping the previous state and this step's input to the new state
and the output.  A :class:`~minifb.nn.FeedbackChain` is a cell, and so are
:class:`RNNCell`, :class:`LSTMCell`, :class:`GRUCell` and
:class:`ConvLSTMCell`.  :class:`Recur` keeps the state between calls, so a
sequence is processed by calling it once per step; every step is recorded on
the tape, so ``loss.backward()`` runs backprop-through-time.

The cells follow PyTorch's equations, gate order and parameter names, so
weights can be copied between the two:

=========  =====================  ==============================
cell       gates (in this order)  state
=========  =====================  ==============================
RNNCell    --                     ``h``
LSTMCell   i, f, g, o             ``(h, c)``
GRUCell    r, z, n                ``h``
=========  =====================  ==============================
"""

from __future__ import annotations

import inspect
import math

from .. import backend, checks
from .. import functional as F
from ..tensor import Tensor
from .layers import Conv, check_activation, uniform_parameter
from .module import Module, Parameter, describe, format_call

__all__ = ["Recur", "RNNCell", "LSTMCell", "GRUCell", "ConvLSTMCell", "RNN", "LSTM", "GRU", "unroll"]


# ---- keeping the state -----------------------------------------------------------------
def map_state(state, fn):
    """Apply ``fn`` to every Tensor in a nested state (dicts, lists, tuples, namedtuples)."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, dict):
        return {k: map_state(v, fn) for k, v in state.items()}
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # namedtuple
        return type(state)(*(map_state(v, fn) for v in state))
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(v, fn) for v in state)
    return state


class Recur(Module):
    """Run a cell over a sequence, keeping its state between calls.

    ``y = rnet(x)`` does ``rnet.state, y = cell(rnet.state, x)``.  The steps
    stay on the tape, so a loss over several steps back-propagates through
    all of them (BPTT); :meth:`detach` cuts the tape (truncated BPTT) and
    :meth:`reset` goes back to the initial state.

    Args:
        cell: any callable ``state, y = cell(state, x)`` (a FeedbackChain, an
            RNNCell, ...).
        state0: the initial state (a Tensor, a tuple, a dict, nested).  With
            ``None`` (default) the state is made on the first call by
            ``cell.initial_state(x)``, zeros fitting the input's batch size.
            Parameters inside ``state0`` are trained like any other (a learned
            initial state).  ``state0`` is kept as given, never detached: one
            computed by recorded ops (``h, out = net(h, x)`` before
            ``nn.Recur(net, h)``) keeps its graph, and every :meth:`reset`
            leads back into it, so the second ``backward`` after a reset
            fails on the freed graph.  Unless it is meant to be learned,
            build it under ``mf.no_grad()`` or pass ``.detach()``-ed tensors
            (``{k: v.detach() for k, v in h.items()}`` for a FeedbackChain's).

    A new Recur starts a new sequence: every Recur inside the cell (an
    ``nn.LSTM`` in a FeedbackChain) goes back to its initial state, as
    :meth:`reset` does, so ``nn.Recur(net, net.initial_state(x))`` once per
    batch starts every batch afresh.

    Attributes:
        state: the current state.

    Example:
        >>> import operator
        >>> net = nn.FeedbackChain(
        ...     nn.Merger("fork1", nn.Dense(5, 10, mf.relu), operator.add),
        ...     nn.Dense(10, 5, mf.relu),
        ...     nn.Splitter("fork1"),
        ... )
        >>> rnet = nn.Recur(net, {"fork1": mf.zeros(5)})
        >>> ys = [rnet(mf.randn(10)) for _ in range(3)]
        >>> rnet.reset()
    """

    def __init__(self, cell, state0=None):
        if not callable(cell):
            raise TypeError(f"Recur: cell must be callable as `state, y = cell(state, x)`, got {cell!r}")
        if not _takes_positional(cell, 2):
            raise TypeError(f"Recur: cell {describe(cell)} cannot be called as `state, y = cell(state, x)` "
                            "(as an RNNCell or a FeedbackChain is); a layer without state belongs in a Chain")
        for inner in _recurs_in("Recur", cell):   # a new sequence, as reset() starts (none in a plain callable)
            inner._state = inner.state0
        self.cell = cell
        self.state0 = state0
        self._state = state0

    @property
    def state(self):
        """The current state (what the next call passes to the cell)."""
        return self._state

    @state.setter
    def state(self, value):
        self._state = value

    def forward(self, x):
        """One step: ``state, y = cell(state, x)``; returns ``y`` (the shapes are the cell's).

        Raises:
            ValueError: from the cell (a state that does not fit ``x``, say); when the state was carried
                over from an earlier call, the message adds that a new batch or sequence needs
                :meth:`reset` first.
        """
        carried = self._state is not None and self._state is not self.state0
        if self._state is None:
            if not hasattr(self.cell, "initial_state"):
                raise ValueError(f"Recur: no initial state given and {describe(self.cell)} has no "
                                 "initial_state(x); pass state0")
            self._state = self.cell.initial_state(x)
        try:
            result = self.cell(self._state, x)
        except ValueError as err:
            if not carried:
                raise
            raise ValueError(f"{err} (the state was carried over from the previous call of {describe(self)}: "
                             "if a new batch or sequence starts here, call reset() or nn.reset_state(model) "
                             "first)") from err
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError(f"Recur: the cell must return (state, y), got {type(result).__name__}")
        self._state, y = result
        return y

    def reset(self) -> None:
        """Go back to the initial state ``state0`` (or to a lazily made zero state), and reset every
        ``Recur`` inside the cell too (an ``nn.LSTM`` in a FeedbackChain), as Flux's ``reset!`` does."""
        reset_state(self)

    def detach(self) -> None:
        """Keep the state's values but cut them from the tape (truncated BPTT).

        Gradients of later steps stop at the current state.  Works for
        Tensor, tuple (LSTM), dict (FeedbackChain) and nested states, and
        detaches every ``Recur`` inside the cell too.
        """
        detach_state(self)

    def _move_extra(self, device):
        """Move ``state0`` and the current state with the module (Parameters are moved in place)."""
        def move(t):
            return t if isinstance(t, Parameter) else t.to(device)
        at_start = self._state is self.state0   # keep it so: a fresh Recur's state is its state0 itself
        self.state0 = map_state(self.state0, move)
        self._state = self.state0 if at_start else map_state(self._state, move)

    def _repr_args(self):
        return [describe(self.cell)]


def reset_state(model) -> None:
    """Reset every :class:`Recur` in ``model`` (``model`` itself included) to its initial state.

    The state-carrying layers may sit anywhere in a model, for example an ``nn.LSTM`` inside a
    ``Chain``; this is Flux's ``reset!``.  Call it before each new sequence.

    Args:
        model: a Module (a plain callable that is not a Module holds no Recur and is left alone).

    Example:
        >>> model = nn.Chain(nn.LSTM(3, 4), nn.Dense(4, 2))
        >>> y = model(mf.randn(5, 3))
        >>> nn.reset_state(model)
        >>> model.layers[0].state is None
        True
    """
    for recur in _recurs_in("reset_state", model):
        recur._state = recur.state0


def detach_state(model) -> None:
    """Cut the tape at the current state of every :class:`Recur` in ``model``, keeping the values
    (truncated BPTT for a model whose recurrent layers sit inside containers).

    Args:
        model: a Module.

    Example:
        >>> model = nn.Chain(nn.RNN(3, 4), nn.Dense(4, 2))
        >>> y = model(mf.randn(5, 3))
        >>> nn.detach_state(model)
        >>> model.layers[0].state.requires_grad
        False
    """
    for recur in _recurs_in("detach_state", model):
        recur._state = map_state(recur._state, lambda t: t.detach())


def _recurs_in(fn: str, model) -> list:
    """Every Recur in ``model`` (itself included), each once."""
    if isinstance(model, Module):
        return [m for m in model.modules() if isinstance(m, Recur)]
    if callable(model):
        return []
    raise TypeError(f"{fn}: model must be a Module, got {type(model).__name__}")


def unroll(recur, xs) -> list:
    """Feed a sequence through a Recur, one step per element, and return the outputs.

    Args:
        recur: a :class:`Recur` (or anything called as ``y = recur(x)``).
        xs: a list of per-step inputs, or a Tensor whose first axis is time.

    Returns:
        ``[recur(xs[0]), recur(xs[1]), ...]``; the state is left after the last step.

    Raises:
        TypeError: ``recur`` is not callable, or ``xs`` is neither a Tensor nor iterable.
        ValueError: ``xs`` is a 0-d Tensor (it has no time axis).

    Example:
        >>> rnn = nn.RNN(3, 4)
        >>> ys = nn.unroll(rnn, mf.randn(6, 2, 3))     # 6 steps, batch 2
        >>> len(ys), ys[0].shape
        (6, (2, 4))
    """
    if not callable(recur):
        raise TypeError(f"unroll: recur must be callable as y = recur(x) (a Recur), got {recur!r}")
    if not _takes_positional(recur, 1) and _takes_positional(recur, 2):
        raise TypeError(f"unroll: {describe(recur)} is a cell, called as `state, y = cell(state, x)`; "
                        "wrap it in a Recur, which keeps the state: nn.unroll(nn.Recur(cell), xs)")
    if isinstance(xs, Tensor):
        if xs.ndim == 0:
            raise ValueError(f"unroll: xs must have a time axis first, got a Tensor of shape {tuple(xs.shape)}")
        xs = [xs[t] for t in range(xs.shape[0])]
    else:
        try:
            xs = iter(xs)
        except TypeError:
            raise TypeError("unroll: xs must be a list of per-step inputs or a Tensor whose first axis is time, "
                            f"got {type(xs).__name__}") from None
    return [recur(x) for x in xs]


def _takes_positional(fn, n: int) -> bool:
    """Whether ``fn`` (a Module's ``forward`` for a Module) can be called with ``n`` positional arguments;
    True when its signature cannot be read."""
    # a Module is called through its forward, unless its class overrides __call__
    target = fn.forward if isinstance(fn, Module) and type(fn).__call__ is Module.__call__ else fn
    try:
        inspect.signature(target).bind(*([None] * n))
    except TypeError:
        return False
    except ValueError:   # no signature (some built-ins)
        return True
    return True


# ---- the classic cells --------------------------------------------------------------------
def _check_sizes(name: str, input_size, hidden_size) -> tuple:
    """``(input_size, hidden_size)`` as ints when both are positive integers, else a ValueError naming ``name``."""
    return checks.integer(name, "input_size", input_size), checks.integer(name, "hidden_size", hidden_size)


class _Cell(Module):
    """Shared parts of RNNCell, LSTMCell and GRUCell: PyTorch's parameter names and init."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        name = type(self).__name__
        self.input_size, self.hidden_size = _check_sizes(name, input_size, hidden_size)
        bias = checks.flag(name, "bias", bias)
        rows = self.gates * self.hidden_size
        bound = 1.0 / math.sqrt(self.hidden_size)
        self.weight_ih = uniform_parameter((rows, self.input_size), bound)
        self.weight_hh = uniform_parameter((rows, self.hidden_size), bound)
        self.bias_ih = uniform_parameter((rows,), bound) if bias else None
        self.bias_hh = uniform_parameter((rows,), bound) if bias else None

    def initial_state(self, x: Tensor):
        """A zero hidden state for input ``x`` of shape ``(..., input_size)``: ``(..., hidden_size)``."""
        self._check_input(x)
        xp = backend.array_module(x.data)
        return Tensor(xp.zeros(tuple(x.shape[:-1]) + (self.hidden_size,), dtype=x.dtype))

    def _check_input(self, x):
        if not isinstance(x, Tensor):   # a TypeError, as every layer gives for a non-Tensor
            raise TypeError(f"{self!r}: input must be a Tensor of shape (..., {self.input_size}), "
                            f"got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.input_size:
            raise ValueError(f"{self!r}: expected input of shape (..., {self.input_size}), got {tuple(x.shape)}")

    def _check_hidden(self, h, what="h"):
        if not isinstance(h, Tensor):
            raise TypeError(f"{self!r}: state {what} must be a Tensor of shape (..., {self.hidden_size}), "
                            f"got {type(h).__name__}")
        if h.ndim < 1 or h.shape[-1] != self.hidden_size:
            raise ValueError(f"{self!r}: expected state {what} of shape (..., {self.hidden_size}), "
                             f"got {tuple(h.shape)}")

    def _check_step(self, x, **state):
        """Check the input and each state tensor, and that the state's batch axes fit the input's.

        A state may be unbatched (or broadcast) into the batch (a learned initial
        state), but never enlarge it.
        """
        self._check_input(x)
        batch = tuple(x.shape[:-1])
        for what, t in state.items():
            self._check_hidden(t, what)
            state_batch = tuple(t.shape[:-1])
            if state_batch != batch and backend.broadcast_shape(state_batch, batch) != batch:
                raise ValueError(f"{self!r}: state {what} of shape {tuple(t.shape)} does not fit input of shape "
                                 f"{tuple(x.shape)} (expected {batch + (self.hidden_size,)})")

    def _gates(self, x, h):
        """``(x W_ih^T + b_ih, h W_hh^T + b_hh)``, each (..., gates·H)."""
        return F.linear(x, self.weight_ih, self.bias_ih), F.linear(h, self.weight_hh, self.bias_hh)

    def _chunk(self, t, k):
        """The k-th block of H entries along the last axis."""
        hs = self.hidden_size
        return t[..., k * hs:(k + 1) * hs]

    def _repr_args(self):
        args = [str(self.input_size), str(self.hidden_size)]
        if self.bias_ih is None:
            args.append("bias=False")
        return args


class RNNCell(_Cell):
    """Elman RNN cell: ``h' = activation(x W_ih^T + b_ih + h W_hh^T + b_hh)``; ``y = h'``.

    Args:
        input_size: size of the last axis of ``x``.
        hidden_size: size of the hidden state H.
        activation: a callable (``mf.tanh`` by default, ``mf.relu`` as PyTorch's ``nonlinearity="relu"``).
        bias: whether to learn ``bias_ih`` and ``bias_hh``.

    Shapes:
        ``x`` (..., input_size), state ``h`` (..., H); ``weight_ih`` (H, input_size),
        ``weight_hh`` (H, H), biases (H,), all initialised ``uniform(-1/sqrt(H), 1/sqrt(H))``.

    Example:
        >>> cell = nn.RNNCell(3, 4)
        >>> x = mf.randn(2, 3)
        >>> h, y = cell(cell.initial_state(x), x)
        >>> y.shape
        (2, 4)
    """

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, activation=F.tanh, bias: bool = True):
        super().__init__(input_size, hidden_size, bias)
        self.activation = check_activation(type(self).__name__, activation)

    def forward(self, h, x):
        """One step: ``h`` (..., H) and ``x`` (..., input_size) -> ``(h', y)``, each (..., H)."""
        self._check_step(x, h=h)
        pre = F.linear(x, self.weight_ih) + F.linear(h, self.weight_hh)
        act = F.activation_name(self.activation)
        if self.bias_ih is not None and act is not None:  # one fused op for both biases and the activation
            h = F.bias_act(pre, self.bias_ih + self.bias_hh, act, pre.ndim - 1)
        else:
            if self.bias_ih is not None:
                pre = pre + (self.bias_ih + self.bias_hh)
            h = pre if self.activation is None else self.activation(pre)
        return h, h

    def _repr_args(self):
        args = super()._repr_args()
        args.insert(2, describe(self.activation))
        return args


class LSTMCell(_Cell):
    """Long short-term memory cell (PyTorch's equations; gate order i, f, g, o).

    ``i = σ(W_ii x + b_ii + W_hi h + b_hi)``, ``f = σ(...)``, ``g = tanh(...)``,
    ``o = σ(...)``; ``c' = f * c + i * g``; ``h' = o * tanh(c')``; ``y = h'``.

    Args:
        input_size, hidden_size, bias: as :class:`RNNCell`.

    Shapes:
        state ``(h, c)``, each (..., H); ``weight_ih`` (4H, input_size), ``weight_hh`` (4H, H), biases (4H,).

    Example:
        >>> cell = nn.LSTMCell(3, 4)
        >>> x = mf.randn(2, 3)
        >>> (h, c), y = cell(cell.initial_state(x), x)
    """

    gates = 4

    def initial_state(self, x: Tensor):
        """Zero ``(h, c)`` for input ``x``, each ``(..., hidden_size)``."""
        h = super().initial_state(x)
        return h, Tensor(h.data.copy())

    def forward(self, state, x):
        """One step: ``(h, c)``, each (..., H), and ``x`` (..., input_size) -> ``((h', c'), y)``, y (..., H)."""
        if not (isinstance(state, tuple) and len(state) == 2):
            raise TypeError(f"{self!r}: the state must be the pair (h, c), got {type(state).__name__}")
        h, c = state
        self._check_step(x, h=h, c=c)
        gi, gh = self._gates(x, h)
        # one fused op for the gate activations and both state updates (a kernel on the GPU);
        # its output is [h' | c'] along the last axis
        hc = F.lstm_pointwise(gi, gh, c)
        h, c = self._chunk(hc, 0), self._chunk(hc, 1)
        return (h, c), h


class GRUCell(_Cell):
    """Gated recurrent unit cell (PyTorch's equations; gate order r, z, n).

    ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``, ``z = σ(W_iz x + b_iz + W_hz h + b_hz)``,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``; ``y = h'``.

    Args:
        input_size, hidden_size, bias: as :class:`RNNCell`.

    Shapes:
        state ``h`` (..., H); ``weight_ih`` (3H, input_size), ``weight_hh`` (3H, H), biases (3H,).

    Example:
        >>> cell = nn.GRUCell(3, 4)
        >>> x = mf.randn(2, 3)
        >>> h, y = cell(cell.initial_state(x), x)
    """

    gates = 3

    def forward(self, h, x):
        """One step: ``h`` (..., H) and ``x`` (..., input_size) -> ``(h', y)``, each (..., H)."""
        self._check_step(x, h=h)
        gi, gh = self._gates(x, h)
        h = F.gru_pointwise(gi, gh, h)  # r, z, n and (1 - z) * n + z * h in one fused op
        return h, h


class ConvLSTMCell(Module):
    """Convolutional LSTM cell (Shi et al. 2015, without peepholes): LSTM gates computed by convolutions.

    ``[i, f, g, o] = conv([x, h], weight) + bias`` (same padding, channels
    concatenated), then as :class:`LSTMCell`: ``c' = σ(f) c + σ(i) tanh(g)``,
    ``h' = σ(o) tanh(c')``; ``y = h'``.

    Args:
        in_channels: channels of the input ``x``.
        hidden_channels: channels Hc of ``h`` and ``c``.
        kernel_size: odd int or pair of odd ints (so that same padding is symmetric).
        bias: whether to learn the gate bias.

    Shapes:
        ``x`` (N, C_in, H, W); state ``(h, c)``, each (N, Hc, H, W), or a shape that
        broadcasts to it such as (1, Hc, H, W) (a learned initial state); the gate
        convolution ``conv`` has weight (4Hc, C_in + Hc, kh, kw), gate order i, f, g, o.

    Example:
        >>> cell = nn.ConvLSTMCell(3, 8, 3)
        >>> x = mf.randn(2, 3, 16, 16)
        >>> (h, c), y = cell(cell.initial_state(x), x)
        >>> y.shape
        (2, 8, 16, 16)
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size, bias: bool = True):
        # checked here, so that the errors name this cell rather than its inner Conv
        in_channels = checks.integer("ConvLSTMCell", "in_channels", in_channels)
        hidden_channels = checks.integer("ConvLSTMCell", "hidden_channels", hidden_channels)
        bias = checks.flag("ConvLSTMCell", "bias", bias)
        kh, kw = checks.pair("ConvLSTMCell", "kernel_size", kernel_size)
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"ConvLSTMCell: kernel_size must be odd (symmetric same padding), got {kernel_size!r}")
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.kernel_size = (kh, kw)
        self.conv = Conv(in_channels + hidden_channels, 4 * hidden_channels, (kh, kw),
                         padding=(kh // 2, kw // 2), bias=bias)

    def initial_state(self, x: Tensor):
        """Zero ``(h, c)`` for an input batch ``x`` (N, C_in, H, W): each (N, Hc, H, W)."""
        self._check_input(x)
        xp = backend.array_module(x.data)
        shape = (x.shape[0], self.hidden_channels) + tuple(x.shape[2:])
        return Tensor(xp.zeros(shape, dtype=x.dtype)), Tensor(xp.zeros(shape, dtype=x.dtype))

    def _check_input(self, x):
        if not isinstance(x, Tensor):   # a TypeError, as every layer gives for a non-Tensor
            raise TypeError(f"{self!r}: input must be a Tensor of shape (N, {self.in_channels}, H, W), "
                            f"got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")

    def forward(self, state, x):
        """One step: ``(h, c)``, each (N, Hc, H, W), and ``x`` (N, C_in, H, W) -> ``((h', c'), y)``."""
        if not (isinstance(state, tuple) and len(state) == 2):
            raise TypeError(f"{self!r}: the state must be the pair (h, c), got {type(state).__name__}")
        self._check_input(x)
        h, c = state
        expected = (x.shape[0], self.hidden_channels) + tuple(x.shape[2:])
        for name, t in (("h", h), ("c", c)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{self!r}: state {name} must be a Tensor, got {type(t).__name__}")
            # a state may broadcast into the batch (a learned initial state), never enlarge it, as in LSTMCell
            if tuple(t.shape) != expected and backend.broadcast_shape(t.shape, expected) != expected:
                raise ValueError(f"{self!r}: state {name} of shape {tuple(t.shape)} does not fit input of "
                                 f"shape {tuple(x.shape)} (expected {expected})")
        if tuple(h.shape) != expected:
            h = F.broadcast_to(h, expected)
        gates = self.conv(F.concat([x, h], axis=1))
        hc = self.hidden_channels
        i = F.sigmoid(gates[:, 0:hc])
        f = F.sigmoid(gates[:, hc:2 * hc])
        g = F.tanh(gates[:, 2 * hc:3 * hc])
        o = F.sigmoid(gates[:, 3 * hc:])
        c = f * c + i * g
        h = o * F.tanh(c)
        return (h, c), h

    def _repr_args(self):
        k = self.kernel_size
        args = [str(self.in_channels), str(self.hidden_channels), str(k[0]) if k[0] == k[1] else repr(k)]
        if self.conv.bias is None:
            args.append("bias=False")   # as the other cells show it
        return args


def cell_as_layer_error(container: str, where: str, layer):
    """The TypeError for a recurrent cell placed where ``container`` calls it as ``y = layer(x)``, or
    ``None`` when ``layer`` is not one of the cells.

    Args:
        container: the container's name (``"Chain"``, ``"FeedbackChain"``).
        where: the layer's place in it (``"layers[1]"``).
        layer: the layer.
    """
    if not isinstance(layer, (_Cell, ConvLSTMCell)) or _takes_positional(layer, 1):   # a subclass may take x alone
        return None
    wrapper = {RNNCell: "RNN", LSTMCell: "LSTM", GRUCell: "GRU"}.get(type(layer))
    instead = f" or nn.{format_call(wrapper, layer._repr_args())}" if wrapper else ""
    return TypeError(f"{container}: {where} {layer!r} is a recurrent cell, called as `state, y = cell(state, x)`, "
                     f"but the {container} calls it as `y = layer(x)`: wrap it in nn.Recur, which keeps its state "
                     f"between calls (nn.Recur(cell){instead})")


# ---- Recur wrappers with a zero initial state --------------------------------------------
class _ZeroStateRecur(Recur):
    """A Recur built around a fresh cell, printed as the wrapper: ``LSTM(3, 4)``."""

    def __repr__(self):
        return format_call(type(self).__name__, self.cell._repr_args())


class RNN(_ZeroStateRecur):
    """``Recur(RNNCell(input_size, hidden_size, activation))`` starting from a zero state.

    One call is one timestep, as with Flux's recurrent layers (not PyTorch's ``nn.RNN``, which runs a
    whole sequence): ``x`` is ``(N, input_size)``. Run a ``(T, N, input_size)`` sequence with
    :func:`unroll`; given to a call, it would be read as one step of a ``(T, N)`` batch.

    The zero state is made on the first call, for the batch shape of that input.
    Each call computes ``h_t = activation(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``
    and returns ``y_t = h_t`` (see :class:`RNNCell`).

    Args:
        input_size: size of the last axis of ``x`` (a positive int).
        hidden_size: size H of the hidden state and the output (a positive int).
        activation: a callable (``mf.tanh`` by default, ``mf.relu`` as PyTorch's
            ``nonlinearity="relu"``), or ``None`` for none.
        bias: whether to learn ``bias_ih`` and ``bias_hh`` (a bool, default ``True``).

    Shapes:
        input ``x`` ``(N, input_size)`` (or ``(..., input_size)``, or
        ``(input_size,)`` unbatched), output ``(..., hidden_size)``; the state
        has the input's batch shape and stays in :attr:`state` between calls.

    Attributes:
        cell: the :class:`RNNCell` (its parameters are the RNN's).
        state: the current ``h``, ``None`` before the first call and after :meth:`reset`.

    Example:
        >>> rnn = nn.RNN(3, 4)
        >>> rnn(mf.randn(2, 3)).shape
        (2, 4)
    """

    def __init__(self, input_size: int, hidden_size: int, activation=F.tanh, bias: bool = True):
        _check_sizes("RNN", input_size, hidden_size)
        checks.flag("RNN", "bias", bias)
        check_activation("RNN", activation)
        super().__init__(RNNCell(input_size, hidden_size, activation, bias))


class LSTM(_ZeroStateRecur):
    """``Recur(LSTMCell(input_size, hidden_size))`` starting from a zero ``(h, c)``.

    One call is one timestep, as with Flux's recurrent layers (not PyTorch's ``nn.LSTM``, which runs a
    whole sequence): ``x`` is ``(N, input_size)``. Run a ``(T, N, input_size)`` sequence with
    :func:`unroll`; given to a call, it would be read as one step of a ``(T, N)`` batch.

    Each call runs one :class:`LSTMCell` step, ``c_t = f * c_{t-1} + i * g``,
    ``h_t = o * tanh(c_t)`` with gates i, f, g, o from ``x_t`` and ``h_{t-1}``,
    and returns ``y_t = h_t``; the zero ``(h, c)`` is made on the first call.

    Args:
        input_size: size of the last axis of ``x`` (a positive int).
        hidden_size: size H of ``h``, ``c`` and the output (a positive int).
        bias: whether to learn ``bias_ih`` and ``bias_hh`` (a bool, default ``True``).

    Shapes:
        input ``x`` ``(N, input_size)`` (or ``(..., input_size)``, or
        ``(input_size,)`` unbatched), output ``(..., hidden_size)``; the state
        has the input's batch shape and stays in :attr:`state` between calls.

    Attributes:
        cell: the :class:`LSTMCell` (its parameters are the LSTM's).
        state: the current ``(h, c)``, ``None`` before the first call and after :meth:`reset`.

    Example:
        >>> lstm = nn.LSTM(3, 4)
        >>> lstm(mf.randn(2, 3)).shape
        (2, 4)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        _check_sizes("LSTM", input_size, hidden_size)
        checks.flag("LSTM", "bias", bias)
        super().__init__(LSTMCell(input_size, hidden_size, bias))


class GRU(_ZeroStateRecur):
    """``Recur(GRUCell(input_size, hidden_size))`` starting from a zero state.

    One call is one timestep, as with Flux's recurrent layers (not PyTorch's ``nn.GRU``, which runs a
    whole sequence): ``x`` is ``(N, input_size)``. Run a ``(T, N, input_size)`` sequence with
    :func:`unroll`; given to a call, it would be read as one step of a ``(T, N)`` batch.

    Each call runs one :class:`GRUCell` step, ``h_t = (1 - z) * n + z * h_{t-1}``
    with gates r, z, n from ``x_t`` and ``h_{t-1}``, and returns ``y_t = h_t``;
    the zero state is made on the first call.

    Args:
        input_size: size of the last axis of ``x`` (a positive int).
        hidden_size: size H of the hidden state and the output (a positive int).
        bias: whether to learn ``bias_ih`` and ``bias_hh`` (a bool, default ``True``).

    Shapes:
        input ``x`` ``(N, input_size)`` (or ``(..., input_size)``, or
        ``(input_size,)`` unbatched), output ``(..., hidden_size)``; the state
        has the input's batch shape and stays in :attr:`state` between calls.

    Attributes:
        cell: the :class:`GRUCell` (its parameters are the GRU's).
        state: the current ``h``, ``None`` before the first call and after :meth:`reset`.

    Example:
        >>> gru = nn.GRU(3, 4)
        >>> gru(mf.randn(2, 3)).shape
        (2, 4)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        _check_sizes("GRU", input_size, hidden_size)
        checks.flag("GRU", "bias", bias)
        super().__init__(GRUCell(input_size, hidden_size, bias))
