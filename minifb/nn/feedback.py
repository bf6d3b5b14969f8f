"""Networks with feedback: Splitter, Merger, FeedbackChain and FeedbackTree.

This is the idea of the Julia package FeedbackNets.jl.  A
:class:`FeedbackChain` runs its layers like a :class:`~minifb.nn.Chain`, one
*timestep* per call, and carries a *state*: a dict from names to tensors.

* At a :class:`Splitter` ``(name)`` the value flowing past is recorded in the
  **new** state under ``name``; the stream continues unchanged.
* At a :class:`Merger` ``(name, op, combine)`` the value recorded under
  ``name`` **at the previous timestep** is read from the incoming state,
  transformed by ``op`` and folded into the stream:
  ``x = combine(x, op(state[name]))``.

So ``state, y = net(state, x)`` maps the previous state and this step's input
to the new state and this step's output.  Wrapping the chain in
:class:`~minifb.nn.Recur` keeps the state between calls, and since every step
is recorded on the tape, a loss over a sequence back-propagates through all
timesteps (BPTT).

A :class:`FeedbackTree` differs in one point: at a Splitter the stream
continues with the *previous* step's value ``state[name]`` (the new value is
only recorded), so a signal climbs one stage per timestep.

Nesting: a :class:`~minifb.nn.Chain`, FeedbackChain or FeedbackTree placed in
a FeedbackChain is run *inside* the outer pass: its Splitters and Mergers use
the outer state, and ``splitnames``/``validate``/``initial_state`` see
through it.  A nested FeedbackChain must sit where the pass reaches it (a
layer of the outer chain or of a Chain nested in it): inside a
SkipConnection, a Parallel or a Merger's op it would be called as
``layer(x)``, without a state, so it is refused at construction (wrap it in
:class:`~minifb.nn.Recur` to give it a state of its own).  A nested
FeedbackChain must also be valid on its own (each of its Mergers reads a
Splitter inside it); a plain Chain may hold Mergers that read Splitters
elsewhere in the outer chain.  The Splitters of a FeedbackTree nested
anywhere behave as tree Splitters; a Chain inherits the behaviour of the
container it is in.  A nested subclass that overrides ``forward`` is not
run inline but called: a Chain as ``y = chain(x)``, a FeedbackChain as
``new, y = chain(state, x)`` on the outer state.
"""

from __future__ import annotations

import operator

from .. import backend
from .. import functional as F
from ..tensor import Tensor, no_grad
from .containers import Chain, LayerSequence, check_layers
from .module import Module, describe

__all__ = ["Splitter", "Merger", "FeedbackChain", "FeedbackTree"]


class Splitter(Module):
    """Mark a point whose value is recorded in the feedback state under ``name``.

    Only meaningful inside a :class:`FeedbackChain` or :class:`FeedbackTree`
    (directly or in a nested Chain); calling it on its own is an error.

    Args:
        name: the state key (a string, unique within the outer chain).

    Example:
        >>> nn.Splitter("fork1")
        Splitter("fork1")
    """

    def __init__(self, name: str):
        if not isinstance(name, str) or not name:
            raise TypeError(f"Splitter: name must be a non-empty string, got {name!r}")
        self.name = name

    def forward(self, x):
        """Raise: a Splitter passes ``x`` unchanged only inside a FeedbackChain or FeedbackTree."""
        raise RuntimeError(f'Splitter("{self.name}") was called outside a FeedbackChain/FeedbackTree; '
                           "Splitters only work directly in one (or in a Chain nested in one)")

    def _repr_args(self):
        return [f'"{self.name}"']


class Merger(Module):
    """Fold the previous step's value of ``state[name]`` into the stream.

    ``x = combine(x, op(state[name]))``, where ``state`` is the state the
    chain was called with (the values its Splitters recorded one step ago).

    When ``combine`` is ``operator.add`` and ``op`` is a Dense, Conv or
    ConvTranspose with a bias and an activation among ``None``, ``mf.relu``,
    ``mf.sigmoid``, ``mf.tanh``, the epilogue ``x + act(op_linear(s) + bias)``
    runs as one fused op (:func:`minifb.functional.merge_act`), with the same
    values.  A subclass of those layers that overrides ``forward`` (or
    ``finish`` or ``__call__``) is called as it is, never fused.

    The arguments are FeedbackNets.jl's, in its order, under other names: its
    ``splitname``, ``fb`` (the feedback branch) and ``op`` (the combine) are
    ``name``, ``op`` and ``combine`` here (the names the README uses).

    Args:
        name: the state key to read (written by a Splitter of the same name).
        op: any callable applied to the state value (a layer, a Chain, ...).
        combine: a binary function ``combine(x, fb)`` (``operator.add``,
            ``operator.mul``, ``lambda a, b: F.concat([a, b], axis=1)``, ...).
            Whatever the combine, the result keeps the stream's number of
            axes and, for a batched stream (2 or more axes), its leading
            (batch) size: a batch-1 state broadcasts over a larger batch, a
            larger state never enlarges the stream.  With the arithmetic
            operators the result must have the stream's shape exactly.

    Example:
        >>> import operator
        >>> nn.Merger("fork1", nn.Dense(5, 10, mf.relu), operator.add)
        Merger("fork1", Dense(5, 10, relu), +)
    """

    def __init__(self, name: str, op, combine):
        if not isinstance(name, str) or not name:
            raise TypeError(f"Merger: name must be a non-empty string, got {name!r}")
        if not callable(op) or not callable(combine):
            raise TypeError(f'Merger("{name}"): op and combine must be callable, got {op!r} and {combine!r}')
        self.name = name
        self.op = op
        self.combine = combine

    def forward(self, x):
        """Raise: a Merger needs the feedback state (see :meth:`merge`, same shape in and out)."""
        raise RuntimeError(f'Merger("{self.name}") was called outside a FeedbackChain/FeedbackTree; '
                           "it needs the feedback state, so put it in one")

    def merge(self, x: Tensor, state: dict) -> Tensor:
        """Return ``combine(x, op(state[name]))`` (the Merger's work in a pass).

        Raises:
            KeyError: the state has no entry ``name``.
            TypeError: the stream or ``state[name]`` is not a Tensor.
            ValueError: ``op`` cannot take the state's value, or the result
                cannot be combined with the stream, or it changes the stream's
                batch size or number of axes (both shapes named).
        """
        if self.name not in state:
            raise KeyError(f'{self!r}: the state has no entry "{self.name}" (it has {sorted(state)}); '
                           "start from net.initial_state(x)")
        s = state[self.name]
        if not isinstance(s, Tensor):
            raise TypeError(f'{self!r}: state["{self.name}"] must be a Tensor, got {type(s).__name__}; '
                            "start from net.initial_state(x)")
        if not isinstance(x, Tensor):
            raise TypeError(f"{self!r}: the stream must be a Tensor, got {type(x).__name__}")
        fused = self._fused(x, s)
        if fused is not None:
            return fused
        try:
            fb = self.op(s)
        except (ValueError, TypeError) as err:
            raise ValueError(f'Merger("{self.name}"): op {describe(self.op)} failed on state["{self.name}"] '
                             f"of shape {tuple(s.shape)}: {err}") from err
        return self._combine(x, fb)

    def _fused(self, x, s):
        """The fused ``x + act(W s + b)`` when it applies, else ``None``."""
        from .layers import AffineLayer  # layers imports nothing from here; avoid a cycle at import

        op = self.op
        if self.combine is not operator.add or not isinstance(op, AffineLayer) or op.bias is None:
            return None
        cls = type(op)
        if (cls.__call__ is not Module.__call__ or cls.forward is not AffineLayer.forward
                or cls.finish is not AffineLayer.finish or "forward" in vars(op) or "finish" in vars(op)):
            return None      # a subclass (or an instance) that changes what calling it does: call it (the plain path)
        act = F.activation_name(op.activation)
        if act is None:
            return None
        try:
            pre, axis = op.pre_activation(s)
        except (ValueError, TypeError) as err:
            raise ValueError(f'Merger("{self.name}"): op {describe(op)} failed on state["{self.name}"] '
                             f"of shape {tuple(s.shape)}: {err}") from err
        if pre.shape != x.shape:
            # Broadcasting feedback (or a shape error): take the plain path, which checks and explains.
            return self._combine(x, op.finish(pre, axis))
        return F.merge_act(x, pre, op.bias, act, axis)

    def _combine(self, x, fb):
        combine = self.combine
        if combine in _ARITHMETIC:
            if backend.broadcast_shape(x.shape, fb.shape) != tuple(x.shape):
                self._refuse(x, fb)
            return combine(x, fb)
        try:
            y = combine(x, fb)
        except (ValueError, TypeError) as err:
            raise ValueError(f'Merger("{self.name}"): combine {describe(combine)} failed on the stream of shape '
                             f'{tuple(x.shape)} and op(state["{self.name}"]) of shape {tuple(fb.shape)}: {err}'
                             ) from err
        # any other combine (F.add, F.maximum, a lambda, a concatenation) may change the channels, never the
        # batch: a state of a larger batch must not silently enlarge the stream (once per call, no array work)
        if isinstance(y, Tensor) and (y.ndim != x.ndim or (x.ndim > 1 and y.shape[0] != x.shape[0])):
            self._refuse(x, fb, f" (combine {describe(combine)} gave shape {tuple(y.shape)}: the state must not "
                                "change the stream's batch size or number of axes)")
        return y

    def _refuse(self, x, fb, why=""):
        raise ValueError(f'{self!r}: cannot combine the stream of shape {tuple(x.shape)} with '
                         f'op(state["{self.name}"]) of shape {tuple(fb.shape)}{why}')

    def _repr_args(self):
        return [f'"{self.name}"', describe(self.op), describe(self.combine)]


_ARITHMETIC = (operator.add, operator.sub, operator.mul, operator.truediv)


class _Pass:
    """One timestep of a feedback container: the incoming and the outgoing state."""

    def __init__(self, state, infer: bool = False):
        self.old = state     # the previous step's values (read by Mergers, tree Splitters)
        self.new = {}        # the values recorded by Splitters in this pass
        self.infer = infer   # True while inferring shapes: Mergers off, Splitters pass through


def _run(layers, x, ctx: _Pass, tree: bool):
    """Run ``layers`` on ``x`` inside the pass ``ctx`` (the heart of the feedback containers)."""
    for layer in layers:
        if isinstance(layer, Splitter):
            ctx.new[layer.name] = x
            if not ctx.infer:
                _check_state_shape(layer, ctx.old, x)
            if tree and not ctx.infer:
                x = _previous_value(layer, ctx.old, x)
        elif isinstance(layer, Merger):
            if not ctx.infer:
                x = layer.merge(x, ctx.old)
        elif isinstance(layer, FeedbackChain):
            if _runs_inline(layer):
                x = _run(layer.layers, x, ctx, layer.is_tree)
            else:
                x = _call_nested(layer, x, ctx)
        elif _is_plain_chain(layer):
            x = _run(layer.layers, x, ctx, tree)
        else:
            x = layer(x)
    return x


def _runs_inline(chain) -> bool:
    """Whether a nested FeedbackChain's layers can be run inside the outer pass: its forward is the
    library's.  A subclass that overrides ``forward`` (to post-process its output, say) is called."""
    cls = type(chain)
    return cls.forward is FeedbackChain.forward and cls.__call__ is Module.__call__


def _call_nested(chain, x, ctx: _Pass):
    """Call a nested FeedbackChain subclass as ``new, y = chain(state, x)`` on the outer state; its
    Splitters' values join the outer pass's new state.  While shapes are inferred it is called on its
    own zero state, so what it does to its output is seen."""
    state = chain.initial_state(x) if ctx.infer else ctx.old
    new, y = chain(state, x)
    ctx.new.update(new)
    return y


def _is_plain_chain(layer) -> bool:
    """A Chain whose forward is Chain's own (a subclass overriding forward is a black box)."""
    return isinstance(layer, Chain) and type(layer).forward is Chain.forward


def _check_state_shape(splitter: Splitter, state: dict, x: Tensor) -> None:
    """Refuse a state entry whose shape is not what its Splitter records (``x``'s), instead of letting a
    Merger broadcast it silently. A batch of 1, or no batch axis, is allowed: a learned initial state."""
    value = state.get(splitter.name)
    if not isinstance(value, Tensor):
        return        # missing or not a Tensor: the Merger or tree Splitter that reads it says so
    old, new = tuple(value.shape), tuple(x.shape)
    if old == new:
        return
    batched = len(new) >= 2   # a 1-d stream (the README's seed example) has no batch axis to broadcast over
    if batched and (old == new[1:] or (len(old) == len(new) and old[0] == 1 and old[1:] == new[1:])):
        return                # a learned state without a batch axis, or with a batch of 1
    allowed = " (a batch of 1 or no batch axis broadcasts)" if batched else ""
    raise ValueError(f'{splitter!r}: state["{splitter.name}"] has shape {old}, but this Splitter records '
                     f"values of shape {new}; a state must have the shape its Splitter writes{allowed}; "
                     "start from net.initial_state(x)")


def _previous_value(splitter: Splitter, state: dict, x: Tensor):
    """The value a tree Splitter continues with: the previous step's ``state[name]``."""
    name = splitter.name
    if name not in state:
        raise KeyError(f'{splitter!r} in a FeedbackTree: the state has no entry "{name}" (it has '
                       f"{sorted(state)}); start from net.initial_state(x)")
    value = state[name]
    if not isinstance(value, Tensor):
        raise TypeError(f'{splitter!r} in a FeedbackTree: state["{name}"] must be a Tensor, got '
                        f"{type(value).__name__}; start from net.initial_state(x)")
    if tuple(value.shape) != tuple(x.shape):     # _check_state_shape let only these through
        value = F.broadcast_to(value, x.shape)   # a batch-1 (learned) state, as a Merger allows
    return value


def _walk_markers(layers):
    """Yield the Splitters, Mergers and nested FeedbackChains of ``layers`` in the order the stream passes
    them, through nested Chains/FeedbackChains: what a pass of the outer chain reaches."""
    for layer in layers:
        if isinstance(layer, (Splitter, Merger)):
            yield layer
        elif isinstance(layer, FeedbackChain):
            yield layer
            yield from _walk_markers(layer.layers)
        elif _is_plain_chain(layer):
            yield from _walk_markers(layer.layers)


def _called_layers(layers, path: str = "layers"):
    """Yield ``(where, layer)`` for every layer a pass calls as ``layer(x)``, through nested plain Chains
    (``where`` names it: ``"layers[2].layers[0]"``); a nested FeedbackChain checked its own."""
    for i, layer in enumerate(layers):
        where = f"{path}[{i}]"
        if _is_plain_chain(layer):
            yield from _called_layers(layer.layers, where + ".layers")
        elif not isinstance(layer, (Splitter, Merger, FeedbackChain)):
            yield where, layer


def _markers_below(module, path=(), seen=None):
    """Yield ``(marker, container)`` for every Splitter, Merger and FeedbackChain among ``module``'s
    sub-modules, except inside a Recur (whose cell keeps its own state) or a nested FeedbackChain (which
    checked its own at its construction); ``container`` is the outermost layer on the way down that the
    feedback pass does not walk through (a SkipConnection, a Merger, ...), or ``module``. Each module is
    entered once, so a module holding a reference back to its parent is no endless loop."""
    from .recurrent import Recur  # recurrent imports nothing from here; avoid a cycle at import

    seen = {id(module)} if seen is None else seen
    for child in module.children():
        if id(child) in seen or isinstance(child, Recur):
            continue
        seen.add(id(child))
        if isinstance(child, (Splitter, Merger, FeedbackChain)):
            opaque = [m for m in path if not _is_plain_chain(m)]
            yield child, (opaque[0] if opaque else module)
        if not isinstance(child, FeedbackChain):
            yield from _markers_below(child, path + (child,), seen)


class FeedbackChain(LayerSequence, Module):
    """A chain of layers with feedback; one call is one timestep.

    ``state, y = net(state, x)``: the layers run in order on ``x``; each
    :class:`Merger` folds in a value recorded one step earlier (from
    ``state``), each :class:`Splitter` records the current value into the
    returned state.

    Indexing gives a layer and slicing a new chain of the same layers, which
    is validated as any chain is: unlike FeedbackNets.jl, a slice that keeps a
    Merger but not the Splitter it reads (``net[0:2]`` of the example below)
    is refused rather than failing on its first call.

    Args:
        *layers: layers (any callables), Splitters, Mergers, and nested Chains
            or FeedbackChains.

    Raises:
        TypeError: at construction, for a layer that is not callable, or a
            recurrent cell (``nn.LSTMCell``, ...), which needs a state of its
            own: wrap it in ``nn.Recur`` (or use ``nn.LSTM``, ...).
        ValueError: at construction, for duplicate Splitter names, a Merger
            whose name no Splitter writes, or a Splitter, Merger or nested
            FeedbackChain the chain cannot reach (see :meth:`validate`).

    Example:
        >>> import operator
        >>> net = nn.FeedbackChain(
        ...     nn.Merger("fork1", nn.Dense(5, 10, mf.relu), operator.add),
        ...     nn.Dense(10, 5, mf.relu),
        ...     nn.Splitter("fork1"),
        ... )
        >>> x = mf.randn(10)
        >>> h = {"fork1": mf.zeros(5)}
        >>> h, out = net(h, x)
        >>> out.shape, h["fork1"].shape
        ((5,), (5,))
    """

    is_tree = False

    def __init__(self, *layers):
        self.layers = check_layers(type(self).__name__, layers)
        self.validate()

    def forward(self, state: dict, x: Tensor):
        """One timestep.

        Args:
            state: ``{name: Tensor}``, the values the Splitters recorded at the
                previous step (or :meth:`initial_state`).
            x: this step's input.

        Returns:
            ``(new_state, y)``: the values recorded in this pass and the output.

        Raises:
            TypeError: ``state`` is not a dict, or a state value or the input is
                not a Tensor.
            KeyError: ``state`` has no entry for a Merger (or a tree Splitter)
                that reads one.
            ValueError: a state value's shape is not what its Splitter writes
                (a batch of 1 or no batch axis excepted, for a batched stream),
                or a layer refuses the shapes it gets (its message names it).
        """
        if not isinstance(state, dict):
            raise TypeError(f"{type(self).__name__}: the state must be a dict {{name: Tensor}}, "
                            f"got {type(state).__name__}; use net.initial_state(x)")
        ctx = _Pass(state)
        y = _run(self.layers, x, ctx, self.is_tree)
        return ctx.new, y

    def splitnames(self) -> list:
        """The names of the Splitters, in the order the stream passes them (nesting included)."""
        return [m.name for m in _walk_markers(self.layers) if isinstance(m, Splitter)]

    def validate(self) -> None:
        """Check the feedback wiring (run at construction).

        Raises:
            ValueError: naming the duplicate Splitter names, the Mergers
                whose name no Splitter writes, or a Splitter, Merger or
                nested FeedbackChain/FeedbackTree the chain cannot reach
                (inside a SkipConnection, a Parallel, a Merger's op, ...; one
                inside a Recur belongs to that Recur).
            TypeError: naming a recurrent cell (``nn.LSTMCell``, ...) among the
                layers the chain calls as ``y = layer(x)``; ``nn.Recur(cell)``
                (or ``nn.LSTM``, ...) belongs there.
        """
        from .recurrent import cell_as_layer_error  # recurrent imports nothing from here; avoid a cycle

        if _runs_inline(self):   # a subclass with a forward of its own may call its layers otherwise
            for where, layer in _called_layers(self.layers):
                cell_error = cell_as_layer_error(type(self).__name__, where, layer)
                if cell_error is not None:
                    raise cell_error
        names = self.splitnames()
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{type(self).__name__}: duplicate Splitter names {duplicates}")
        reachable = {id(m) for m in _walk_markers(self.layers)}
        hidden = []
        if _runs_inline(self):   # a subclass with a forward of its own may use markers it keeps as attributes
            hidden = [(m, container) for m, container in _markers_below(self) if id(m) not in reachable]
        if hidden:
            marker, container = hidden[0]
            where = (f"{type(self).__name__}: {marker!r} sits inside {describe(container)}, where the chain cannot "
                     "reach it: ")
            if isinstance(marker, FeedbackChain):   # it would be called as layer(x), without the state it needs
                raise ValueError(where + f"a nested {type(marker).__name__} runs on the outer state, so it works "
                                 "as a layer of a FeedbackChain or FeedbackTree, or of a Chain nested in one (not "
                                 "inside a SkipConnection, a Parallel, a Merger's op or another layer); wrap it in "
                                 "nn.Recur to keep a state of its own there")
            raise ValueError(where + "Splitters and Mergers work as layers of a FeedbackChain or FeedbackTree, or "
                             "of a Chain nested in one (not inside a SkipConnection, a Parallel, a Merger's op "
                             "or another layer)")
        orphans = [m for m in _walk_markers(self.layers) if isinstance(m, Merger) and m.name not in names]
        if orphans:
            listed = ", ".join(f'Merger("{m.name}")' for m in orphans)
            raise ValueError(f"{type(self).__name__}: no Splitter writes the state read by {listed} "
                             f"(Splitters: {names})")

    def initial_state(self, x: Tensor) -> dict:
        """A zero state whose shapes fit input ``x``.

        The chain runs once on ``x`` with feedback off (Mergers skipped,
        Splitters passing the stream on), without recording on the tape and
        in evaluation mode (BatchNorm statistics untouched); each Splitter's
        shape is recorded. Every :class:`~minifb.nn.Recur` inside (an
        ``nn.LSTM``) runs from its initial state, so the shapes do not depend
        on an earlier batch, and keeps its state afterwards.

        Args:
            x: an input like the ones the chain will get (its batch size counts).

        Returns:
            ``{name: zeros}`` in Splitter order, on ``x``'s device, each with the shape and dtype
            of the value its Splitter records (an integer input to a float32 net gives float32 states).

        Raises:
            TypeError: ``x`` is not a Tensor.
            ValueError: the chain cannot run with feedback off (e.g. a Merger's
                combine changes the stream's shape, as concatenation does);
                build the state by hand then.
        """
        from .recurrent import Recur  # recurrent imports nothing from here; avoid a cycle at import

        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__}.initial_state: x must be a Tensor, got {type(x).__name__}")

        modes = [(m, m.training) for m in self.modules()]
        states = [(m, m.state) for m in self.modules() if isinstance(m, Recur)]
        ctx = _Pass({}, infer=True)
        try:
            for m, _ in states:    # from state0, or one made lazily for x: not the last batch's state
                m.state = m.state0
            self.eval()
            with no_grad():
                _run(self.layers, x, ctx, self.is_tree)
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{type(self).__name__}.initial_state: running the chain with feedback off on an "
                             f"input of shape {tuple(x.shape)} failed ({err}). Check that the input fits the "
                             "chain; if it does and a Merger's combine changes the stream's shape (e.g. "
                             "concatenation), build the state by hand") from err
        finally:
            for m, mode in modes:
                m.training = mode
            for m, state in states:    # a Recur inside the chain has not taken a step
                m.state = state
        xp = backend.array_module(x.data)
        return {name: Tensor(xp.zeros(v.shape, dtype=v.dtype)) for name, v in ctx.new.items()}



class FeedbackTree(FeedbackChain):
    """A FeedbackChain in which each Splitter passes on the *previous* step's value.

    At a :class:`Splitter` ``(name)`` the current value is recorded in the new
    state, and the stream continues with ``state[name]``, the value recorded
    there one step earlier.  A signal therefore climbs one stage per timestep,
    as in FeedbackNets.jl's FeedbackTree: the input of step t first reaches
    the stage above the k-th Splitter at step t + k. Before that, with a zero
    initial state, that stage sees values computed from zeros (zeros
    themselves at the first step, and later too only if the layers between
    map 0 to 0, e.g. without biases).

    For a Splitter ``name`` at step t: ``new_state[name] = x_t`` and the stream
    continues with ``state[name] = x_{t-1}`` (broadcast to ``x_t``'s shape when
    it is a batch-1 state).  Mergers work as in a FeedbackChain.

    Args:
        *layers: layers (any callables), Splitters, Mergers, and nested Chains
            or FeedbackChains, as :class:`FeedbackChain`; every Splitter among
            them, those in nested plain Chains included, behaves as a tree
            Splitter (a nested FeedbackChain keeps its own chain Splitters, a
            nested FeedbackTree its tree ones).

    Raises:
        TypeError: at construction, for a layer that is not callable, or a
            recurrent cell (wrap it in ``nn.Recur``).
        ValueError: at construction, for duplicate Splitter names, a Merger
            whose name no Splitter writes, or a Splitter, Merger or nested
            FeedbackChain the chain cannot reach (see :meth:`validate`).

    Example:
        >>> tree = nn.FeedbackTree(nn.Dense(3, 3), nn.Splitter("s1"), nn.Dense(3, 2))
        >>> h = tree.initial_state(mf.ones(3))
        >>> h, y = tree(h, mf.ones(3))     # the Dense(3, 2) saw zeros this step
        >>> h["s1"].shape, y.shape
        ((3,), (2,))
    """

    is_tree = True
