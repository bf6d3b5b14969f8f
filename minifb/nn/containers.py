"""Containers that compose layers: Chain, SkipConnection, Parallel (as in Flux)."""

from __future__ import annotations

from .module import Module, describe, error_from

__all__ = ["Chain", "SkipConnection", "Parallel"]


def check_layers(container: str, layers) -> list:
    """``layers`` as a list when every one is callable, else a TypeError naming ``container`` and the index."""
    return [_check_callable(container, f"layers[{i}]", layer) for i, layer in enumerate(layers)]


def _check_callable(container: str, name: str, value):
    if not callable(value):
        raise TypeError(f"{container}: {name} must be callable, got {value!r}")
    return value


def _connection_error(container, what: str, values, err):
    """The error (of ``err``'s kind) for a container whose ``connection`` failed, naming it and the shapes."""
    shapes = ", ".join(str(tuple(v.shape)) if hasattr(v, "shape") else type(v).__name__ for v in values)
    return error_from(f"{container!r}: connection {describe(container.connection)} failed on {what}, of shapes "
                      f"[{shapes}]", err)


def _refuse_stateful_layer(chain, index: int, layer, err) -> None:
    """Raise a TypeError that says why, when ``layer`` (which just failed with ``err``) is a FeedbackChain
    or a recurrent cell: either is called as ``state, y = net(state, x)``, not ``y = layer(x)``. Return
    otherwise."""
    from .feedback import FeedbackChain  # feedback imports this module; avoid a cycle at import
    from .recurrent import cell_as_layer_error

    cell_error = cell_as_layer_error(type(chain).__name__, f"layers[{index}]", layer)
    if cell_error is not None:
        raise cell_error from err

    if isinstance(layer, FeedbackChain):
        kind = type(layer).__name__
        raise TypeError(f"{type(chain).__name__}: layers[{index}] {describe(layer)} is a {kind}, called as "
                        f"`state, y = net(state, x)`, but this {type(chain).__name__} (not inside a FeedbackChain) "
                        f"calls it as `y = layer(x)`: put the {type(chain).__name__} in a FeedbackChain, where the "
                        f"{kind} takes part in its state, or wrap the {kind} in nn.Recur") from err


class LayerSequence:
    """Sequence behaviour shared by the containers that hold ``self.layers``.

    Indexing returns a layer; slicing returns a new container of the same type
    sharing those layers (built by :meth:`_with_layers`); ``len`` and iteration
    go over the layers.
    """

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._with_layers(self.layers[index])
        try:
            return self.layers[index]
        except IndexError:
            raise IndexError(f"{type(self).__name__}: index {index!r} is out of range for "
                             f"{len(self.layers)} layers") from None
        except TypeError:
            raise TypeError(f"{type(self).__name__}: index must be an int or a slice, got {index!r}") from None

    def _with_layers(self, layers):
        """A new container of this type holding ``layers``; containers with more arguments override it."""
        return type(self)(*layers)

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def _repr_args(self):
        return [describe(layer) for layer in self.layers]


class Chain(LayerSequence, Module):
    """Apply layers one after another: ``y = layers[-1](...layers[1](layers[0](x)))``.

    Any callable can be a layer (a Module, ``mf.relu``, a lambda).  Indexing
    returns a layer, slicing returns a new Chain sharing the same layers.
    Placed inside a :class:`~minifb.nn.FeedbackChain`, a Chain may hold
    Splitters and Mergers that take part in the outer feedback state.

    Args:
        *layers: the layers, applied left to right.

    Raises:
        TypeError: a layer is not callable.

    Example:
        >>> net = nn.Chain(nn.Dense(4, 8, mf.relu), nn.Dense(8, 2))
        >>> net(mf.randn(3, 4)).shape
        (3, 2)
        >>> net[:1]
        Chain(Dense(4, 8, relu))
    """

    def __init__(self, *layers):
        self.layers = check_layers("Chain", layers)

    def forward(self, x):
        """Apply the layers in order; the shapes are the first layer's input and the last one's output.

        Raises:
            TypeError: a layer is a FeedbackChain (or FeedbackTree), which needs
                the feedback state: put this Chain in a FeedbackChain, or wrap
                that layer in ``nn.Recur``; or a layer is a recurrent cell
                (``nn.LSTMCell``, ...): wrap it in ``nn.Recur`` (or use
                ``nn.LSTM``, ...).
        """
        for i, layer in enumerate(self.layers):
            try:
                x = layer(x)
            except TypeError as err:
                _refuse_stateful_layer(self, i, layer, err)
                raise
        return x


class SkipConnection(Module):
    """A residual block: ``y = connection(layer(x), x)``.

    Args:
        layer: any callable (often a Chain).
        connection: a binary function of ``(layer(x), x)``, e.g. ``operator.add``
            for a residual connection or ``lambda a, b: F.concat([a, b], axis=1)``.

    Raises:
        TypeError: ``layer`` or ``connection`` is not callable (at construction).
        TypeError, ValueError: ``connection`` fails on ``(layer(x), x)`` (naming the container and shapes).

    Example:
        >>> import operator
        >>> block = nn.SkipConnection(nn.Dense(4, 4, mf.relu), operator.add)
        >>> block(mf.randn(2, 4)).shape
        (2, 4)
    """

    def __init__(self, layer, connection):
        self.layer = _check_callable("SkipConnection", "layer", layer)
        self.connection = _check_callable("SkipConnection", "connection", connection)

    def forward(self, x):
        """Return ``connection(layer(x), x)``; the shapes are those of ``layer`` and ``connection``."""
        y = self.layer(x)
        try:
            return self.connection(y, x)
        except (TypeError, ValueError) as err:   # say which container and which shapes
            raise _connection_error(self, "the layer's output and the input", [y, x], err) from err

    def _repr_args(self):
        return [describe(self.layer), describe(self.connection)]


class Parallel(LayerSequence, Module):
    """Apply several layers to the same input and combine: ``y = connection(l1(x), l2(x), ...)``.

    As in a Chain, indexing returns a branch, slicing returns a new Parallel
    with the same connection sharing those branches, and ``len`` and iteration
    go over the branches.

    Args:
        connection: a function of as many arguments as there are layers (e.g.
            ``operator.add`` for two layers, or ``lambda *ys: F.concat(list(ys), axis=1)``).
        *layers: the branches.

    Raises:
        TypeError: ``connection`` or a branch is not callable (at construction).
        ValueError: no branches (also a slice that keeps none).
        TypeError, ValueError: ``connection`` fails on the branches' outputs (naming their shapes).

    Example:
        >>> import operator
        >>> both = nn.Parallel(operator.add, nn.Dense(4, 3), nn.Dense(4, 3))
        >>> both(mf.randn(2, 4)).shape
        (2, 3)
        >>> len(both), both[:1]
        (2, Parallel(+, Dense(4, 3)))
    """

    def __init__(self, connection, *layers):
        if not layers:
            raise ValueError("Parallel: needs at least one layer")
        self.connection = _check_callable("Parallel", "connection", connection)
        self.layers = check_layers("Parallel", layers)

    def forward(self, x):
        """Return ``connection(l1(x), l2(x), ...)``; each branch takes ``x``, the output shape is ``connection``'s."""
        ys = [layer(x) for layer in self.layers]
        try:
            return self.connection(*ys)
        except (TypeError, ValueError) as err:   # e.g. operator.add given three branches, or shapes that differ
            raise _connection_error(self, f"the {len(ys)} branch outputs", ys, err) from err

    def _with_layers(self, layers):
        return type(self)(self.connection, *layers)

    def _repr_args(self):
        return [describe(self.connection)] + [describe(layer) for layer in self.layers]
