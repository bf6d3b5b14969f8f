"""Module: the base class of layers, containers and cells.

A :class:`Module` finds its parameters by itself: it walks its attributes
(in the order they were assigned) and, inside them, lists, tuples and dicts,
collecting every :class:`Parameter` and :class:`Buffer` and descending into
every sub-``Module``.  Nothing has to be registered, and the order is
deterministic, so ``named_parameters()`` gives stable dotted names such as
``layers.0.weight`` that :meth:`Module.state_dict` and
:meth:`Module.load_state_dict` use.

Attributes whose name starts with an underscore are private: they are not
walked.  A module may keep helper references there (a cache, a parent) without
their parameters being counted twice or under a second name.

A :class:`Parameter` is a trainable tensor (``requires_grad=True``).  A
:class:`Buffer` is a tensor that belongs to the module's state but is not
trained (BatchNorm's running statistics): it is saved in ``state_dict()`` and
moved by ``to(device)``, and optimisers never see it.

Example:
    >>> import minifb as mf
    >>> from minifb import nn
    >>> class Affine(nn.Module):
    ...     def __init__(self, n):
    ...         self.scale = nn.Parameter(mf.ones(n))
    ...         self.shift = nn.Parameter(mf.zeros(n))
    ...     def forward(self, x):
    ...         return x * self.scale + self.shift
    >>> [name for name, _ in Affine(3).named_parameters()]
    ['scale', 'shift']
"""

from __future__ import annotations

import numbers
import operator
import textwrap
from collections import namedtuple
from collections.abc import Mapping

import numpy as np

from .. import backend, checks
from ..tensor import Tensor, data_of

__all__ = ["Module", "Parameter", "Buffer", "LoadResult"]


class Parameter(Tensor):
    """A tensor that a :class:`Module` trains: ``requires_grad`` is on by default.

    Args:
        data: a backend array, a :class:`~minifb.Tensor` (its values are
            shared, not copied), or anything ``numpy.asarray`` accepts.
        requires_grad: set to ``False`` to freeze the parameter (a bool).

    Raises:
        TypeError: ``data`` is no array of numbers (``None``, a string or
            bytes, a list holding one, an array of strings or objects), it is
            not floating point while ``requires_grad`` is True, or
            ``requires_grad`` is no bool.
        ValueError: ``data`` holds an int beyond float's range.

    Example:
        >>> w = nn.Parameter(mf.randn(3, 2))
        >>> w.requires_grad
        True
    """

    def __init__(self, data, requires_grad: bool = True):
        requires_grad = checks.flag("Parameter", "requires_grad", requires_grad)
        array = _as_backend_array(data, "Parameter")
        try:
            super().__init__(array, requires_grad=requires_grad)
        except TypeError as error:   # e.g. an integer array that would require grad: say who refused it
            raise TypeError(f"Parameter: {error} (pass requires_grad=False to keep it)") from None
        _share_version(self, data)

    def __repr__(self):
        return "Parameter(" + super().__repr__() + ")"


class Buffer(Tensor):
    """A tensor that is part of a module's state but is not trained.

    Buffers appear in ``state_dict()`` and follow ``to(device)``, but not in
    ``parameters()``.  Update them in place through ``.data``.

    Args:
        data: a backend array of numbers (its dtype kept: boolean, integer,
            floating or complex), a :class:`~minifb.Tensor` (its values are
            shared), or anything else ``numpy.asarray`` makes an array of real
            numbers from (converted to float32).

    Raises:
        TypeError: ``data`` is no array of numbers (``None``, a string or
            bytes, a list holding one, an array of strings or objects).
        ValueError: ``data`` holds an int beyond float's range.

    Example:
        >>> running_mean = nn.Buffer(mf.zeros(4))
        >>> running_mean.requires_grad
        False
    """

    def __init__(self, data):
        super().__init__(_as_backend_array(data, "Buffer"), requires_grad=False)
        _share_version(self, data)

    def __repr__(self):
        return "Buffer(" + super().__repr__() + ")"


def _share_version(new: Tensor, data) -> None:
    """A Parameter or Buffer made from a Tensor shares its memory, so it shares its version counter too
    (a step on one is an in-place update of the other)."""
    if isinstance(data, Tensor):
        new._shared = data._version_counter()


def _as_backend_array(data, owner: str):
    """The backend array of a Tensor, a NumPy/CuPy array as it is, anything else as float32 NumPy.

    Raises a TypeError naming ``owner`` for what is no array of numbers: ``None``, a string or bytes
    (which NumPy would parse, ``"3"`` as 3.0), a list holding one (``[None, 1.0]`` would give NaN), a
    ragged list, an array of strings, objects or dates.
    """
    if isinstance(data, Tensor) or backend.is_array(data):
        array = data.data if isinstance(data, Tensor) else data
        if array.dtype.kind not in "biufc":
            raise TypeError(f"{owner}: data must hold numbers (boolean, integer, floating or complex), "
                            f"got an array of dtype {array.dtype}")
        return array
    refusal = TypeError(f"{owner}: data must be a Tensor, an array or a (nested) list of real numbers, "
                        f"got {data!r}")
    try:
        array = np.asarray(data)
    except (TypeError, ValueError):   # a ragged list
        raise refusal from None
    # objects (Fraction, Decimal, 0-d Tensors beside other things) must each be a real number
    if array.dtype.kind == "O" and all(_is_real(v) for v in array.flat):
        try:
            array = array.astype(np.float64)
        except OverflowError:   # an int past float's range (10 ** 400)
            raise ValueError(f"{owner}: data holds a number beyond float's range, got {data!r}") from None
    if array.dtype.kind not in "biuf":
        raise refusal
    return array.astype(backend.DEFAULT_DTYPE)


def _is_real(value) -> bool:
    """True for a real number (Python or NumPy, Fraction, Decimal, a 0-d array or Tensor of one)."""
    v = checks.scalar(value)
    return isinstance(v, numbers.Real) or (isinstance(v, numbers.Number) and not isinstance(v, numbers.Complex))


LoadResult = namedtuple("LoadResult", ["missing_keys", "unexpected_keys"])
LoadResult.__doc__ = "What :meth:`Module.load_state_dict` did not match (empty lists when everything matched)."


class Module:
    """Base class of every layer, container and recurrent cell.

    Subclasses implement ``forward`` (calling the module calls it) and assign
    their parameters and sub-modules as ordinary attributes; they need not call
    ``super().__init__()``.  ``module(*args)`` is ``module.forward(*args)``;
    its shapes are the subclass's.

    Args:
        none: ``Module()`` takes no arguments; a subclass's constructor takes
            its own.

    Attributes:
        training: ``True`` in training mode (the default), ``False`` after
            :meth:`eval`; read by Dropout and BatchNorm.

    Example:
        >>> class Scale(nn.Module):
        ...     def __init__(self, n):
        ...         self.weight = nn.Parameter(mf.ones(n))
        ...     def forward(self, x):                 # (..., n) -> (..., n)
        ...         return x * self.weight
        >>> m = Scale(3)
        >>> m(mf.ones(2, 3)).shape, m.num_parameters(), [name for name, _ in m.named_parameters()]
        ((2, 3), 3, ['weight'])
    """

    training = True  # class default, so subclasses need not call super().__init__()

    def __setattr__(self, name, value):
        """Set an attribute, keeping PyTorch's rules for the names of parameters and buffers.

        A name that holds a Parameter takes only a Parameter or ``None`` (and
        stays a parameter's name after ``None``, until ``del``): ``layer.weight
        = array`` would otherwise drop the weight from ``parameters()`` without
        a word, and an optimiser would skip it.  A plain Tensor assigned to a
        buffer's name is kept as a :class:`Buffer`; a Parameter may replace a
        buffer.  Private attributes (``_name``) are not walked, so they are free.
        """
        if not name.startswith("_"):
            kinds = self.__dict__.get("_tensor_kinds", {})   # name -> Parameter or Buffer; never changed in place,
            kind = kinds.get(name)                           # so a copy.copy of the module has a table of its own
            if value is not None and kind is Parameter and not isinstance(value, Parameter):
                _refuse_assignment(self, name, value, "parameter", "nn.Parameter")
            if isinstance(value, (Parameter, Buffer)):
                new = Parameter if isinstance(value, Parameter) else Buffer
                if new is not kind:
                    self.__dict__["_tensor_kinds"] = {**kinds, name: new}
            elif value is not None and kind is Buffer:
                if not isinstance(value, Tensor):
                    _refuse_assignment(self, name, value, "buffer", "a Tensor")
                value = Buffer(value)   # PyTorch keeps a tensor assigned to a buffer's name a buffer
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        """Delete an attribute; a parameter's or buffer's name is then free for any value."""
        object.__delattr__(self, name)
        kinds = self.__dict__.get("_tensor_kinds", {})
        if name in kinds:
            self.__dict__["_tensor_kinds"] = {k: v for k, v in kinds.items() if k != name}

    # ---- calling -------------------------------------------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - interface
        """Compute the output from the inputs; each subclass documents its shapes."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- walking the attributes ---------------------------------------------
    def _public_attributes(self):
        """(name, value) of the attributes that are walked, in assignment order."""
        return [(k, v) for k, v in vars(self).items() if not k.startswith("_")]

    def _walk(self, every: bool = False):
        """Yield ``(dotted_name, value)`` for every Module and Tensor reachable from the attributes.

        Pre-order, in attribute order (lists by index, dicts by insertion
        order).  A module reachable twice is entered once, under its first
        name, or with ``every`` under each of its names (as a state dict lists
        a shared module).  A module or container is never entered from inside
        itself, so a list that holds itself ends the walk there.
        """
        seen = {id(self)}
        stack = [(_join("", str(k)), v, (id(self),)) for k, v in reversed(self._public_attributes())]
        while stack:
            name, value, path = stack.pop()     # path: the ids of the modules and containers around value
            if isinstance(value, Tensor):
                yield name, value
                continue
            if isinstance(value, Module):
                if id(value) in path or (id(value) in seen and not every):
                    continue
                seen.add(id(value))
                yield name, value
                items = value._public_attributes()
            elif isinstance(value, dict):
                items = list(value.items())
            elif isinstance(value, (list, tuple)):
                items = list(enumerate(value))
            else:
                continue
            if id(value) not in path:
                inner = path + (id(value),)
                stack.extend((_join(name, str(k)), v, inner) for k, v in reversed(items))

    def named_modules(self):
        """Yield ``(dotted_name, module)`` for this module (name ``""``) and every sub-module, depth first."""
        yield "", self
        for name, value in self._walk():
            if isinstance(value, Module):
                yield name, value

    def modules(self):
        """Yield this module and all sub-modules (see :meth:`named_modules`)."""
        for _, m in self.named_modules():
            yield m

    def children(self):
        """Yield the direct sub-modules, in attribute order."""
        seen = set()
        for value in _direct_modules(self._public_attributes()):
            if id(value) not in seen:
                seen.add(id(value))
                yield value

    def _named_tensors(self, kinds):
        """Yield ``(dotted_name, tensor)`` for tensors of the given classes, each once."""
        seen = set()
        for name, value in self._walk():
            if isinstance(value, kinds) and id(value) not in seen:
                seen.add(id(value))
                yield name, value

    def _state_items(self) -> list:
        """``(dotted_name, tensor)`` of every Parameter and Buffer under each of its names.

        A shared tensor appears under every name, as in PyTorch's state dict; two different tensors
        under one name (dict keys ``1`` and ``"1"``, or ``"a.b"`` beside ``a.b``) are refused, since
        one of them would silently be left out of a saved model.
        """
        items = {}
        for name, value in self._walk(every=True):
            if isinstance(value, (Parameter, Buffer)) and items.setdefault(name, value) is not value:
                raise ValueError(f"{type(self).__name__}: two different tensors are both named {name!r} "
                                 "(attribute names or dict keys collide); rename one")
        return list(items.items())

    def named_parameters(self):
        """Yield ``(dotted_name, parameter)`` for every trainable parameter, in a fixed order.

        Names follow the attribute path: ``weight``, ``layers.0.weight``,
        ``op.bias``, ``state0.fork1``.  A parameter shared by two layers is
        yielded once, under its first name.
        """
        return self._named_tensors(Parameter)

    def parameters(self):
        """Return the list of parameters (what an optimiser updates)."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        """Yield ``(dotted_name, buffer)`` for every :class:`Buffer` (e.g. running statistics)."""
        return self._named_tensors(Buffer)

    def buffers(self):
        """Return the list of buffers."""
        return [b for _, b in self.named_buffers()]

    # ---- state dict -----------------------------------------------------------
    def state_dict(self) -> dict:
        """Return the parameters and buffers as ``{dotted_name: Tensor}``.

        The tensors are detached copies (changing them does not change the
        module), on the module's device.  A parameter shared by two layers is
        listed under both names, as in PyTorch.  Together with
        :meth:`load_state_dict` this is what :func:`minifb.save` and
        :func:`minifb.load` store.

        Example:
            >>> sorted(nn.Dense(2, 3).state_dict())
            ['bias', 'weight']
        """
        return {name: Tensor(t.data.copy()) for name, t in self._state_items()}

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> LoadResult:
        """Copy values from ``state_dict`` into the parameters and buffers.

        Values keep the parameter's device and dtype (they are converted), and
        are copied into the existing arrays, as in PyTorch: an array taken from
        ``p.data`` before the load, or a Parameter sharing it, sees the new
        values, and a graph recorded before the load can no longer backward.
        Nothing is changed unless everything is acceptable: every value is
        checked and converted first, and only then assigned.

        Args:
            state_dict: ``{dotted_name: Tensor or array}``, as from :meth:`state_dict`.
            strict: when ``True`` (default), a missing or an unexpected name is
                an error; when ``False`` they are skipped and returned.

        Returns:
            ``LoadResult(missing_keys, unexpected_keys)``.

        Raises:
            TypeError: ``state_dict`` is not a mapping, or ``strict`` not a bool.
            KeyError: (strict) listing every missing and unexpected name.
            ValueError: listing every name whose shape does not match or whose
                value cannot be converted to the parameter's dtype (always).
        """
        fn = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{fn}: state_dict must be a dict {{name: Tensor or array}}, "
                            f"got {type(state_dict).__name__}")
        strict = checks.flag(fn, "strict", strict)
        items = self._state_items()
        own = dict(items)
        missing = missing_state_names(items, state_dict)
        unexpected = [k for k in state_dict if k not in own]
        converted, mismatched, unconvertible = {}, [], []
        for name, target in own.items():
            if name not in state_dict:
                continue
            try:
                converted[name] = _converted(data_of(state_dict[name]), target)
            except _ShapeMismatch as error:
                mismatched.append(f"{name}: expected shape {target.shape}, got {error.shape}")
            except (TypeError, ValueError) as error:
                unconvertible.append(f"{name}: cannot convert to {target.dtype} ({error})")
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatches: " + "; ".join(mismatched))
        if unconvertible:
            problems.append("values that cannot be converted: " + "; ".join(unconvertible))
        if problems:
            message = f"{type(self).__name__}.load_state_dict: " + "; ".join(problems)
            raise (ValueError if mismatched or unconvertible else KeyError)(message)
        for name, value in converted.items():
            target = own[name]
            if backend.is_writable(target.data):
                backend.array_module(target.data).copyto(target.data, value)
            else:
                target.data = value
            target._version += 1   # an in-place update: a graph recorded before it can no longer backward
        return LoadResult(missing, unexpected)

    # ---- modes, devices, gradients ----------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (``training=mode``) on this module and every sub-module; returns ``self``.

        Raises:
            TypeError: ``mode`` is not a bool (``"no"`` would read as True).
        """
        mode = checks.flag(f"{type(self).__name__}.train", "mode", mode)
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> "Module":
        """Set evaluation mode (Dropout off, BatchNorm uses running statistics); returns ``self``."""
        return self.train(False)

    def to(self, device: str) -> "Module":
        """Move every parameter and buffer to ``device`` in place; returns ``self``.

        The parameter objects stay the same (an optimiser built before keeps
        working); their ``.data`` and ``.grad`` are moved.  Modules holding other
        tensors (a Recur's state) move them in their ``_move_extra`` hook.

        Raises:
            ValueError: ``device`` is not ``"cpu"``, ``"cuda"`` or ``"cuda:0"``
                (the message names the module's class).
            RuntimeError: ``"cuda"`` without CuPy and a GPU.
        """
        try:
            device = backend.check_device(device)
        except (ValueError, RuntimeError) as error:   # say which module was being moved
            raise type(error)(f"{type(self).__name__}.to: {error}") from None
        for _, t in self._named_tensors((Parameter, Buffer)):
            t.data = backend.to_device(t.data, device)
            if t.grad is not None:
                t.grad = backend.to_device(t.grad, device)
        for m in self.modules():
            m._move_extra(device)
        return self

    def _move_extra(self, device: str) -> None:
        """Hook for :meth:`to`: move tensors that are neither parameters nor buffers."""

    def zero_grad(self) -> None:
        """Forget the accumulated gradients of every parameter (``grad = None``)."""
        for p in self.parameters():
            p.grad = None

    def num_parameters(self) -> int:
        """Total number of trainable scalars."""
        return sum(int(p.size) for p in self.parameters())

    # ---- printing ---------------------------------------------------------------
    def _repr_args(self) -> list:
        """The argument strings shown by ``repr``; layers override this.

        The default shows the direct sub-modules as ``name=...``, including
        those kept in lists, tuples and dicts (``blocks=[Dense(2, 2), ...]``).
        """
        out = []
        for name, value in self._public_attributes():
            shown = _repr_modules(value)
            if shown is not None:
                out.append(f"{name}={shown}")
        return out

    def __repr__(self):
        return format_call(type(self).__name__, self._repr_args())


# ---- helpers shared by the nn package ----------------------------------------

_OPERATOR_SYMBOLS = {
    operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
    operator.matmul: "@", operator.pow: "**",
}


def error_from(prefix: str, err: Exception) -> Exception:
    """``err`` said again after ``prefix`` (a layer's repr, say): a TypeError when ``err`` is one, else a
    ValueError, so that a layer names itself in an error raised by the function it calls, keeping its kind
    (and not copying a subclass, whose constructor may take other arguments)."""
    kind = TypeError if isinstance(err, TypeError) else ValueError
    return kind(f"{prefix}: {err}")


def describe(fn) -> str:
    """A short readable name for a function or module, as used in reprs.

    ``operator.add`` prints as ``+``, ``mf.relu`` as ``relu``, a Module as its
    own repr, ``None`` as ``identity``.
    """
    if fn is None:
        return "identity"
    if isinstance(fn, Module):
        return repr(fn)
    symbol = _OPERATOR_SYMBOLS.get(fn) if _hashable(fn) else None
    if symbol is not None:
        return symbol
    name = getattr(fn, "__name__", None)
    if name is not None:
        return name
    func = getattr(fn, "func", None)  # functools.partial
    if func is not None:
        return f"partial({describe(func)})"
    return repr(fn)


def _hashable(x) -> bool:
    try:
        hash(x)
        return True
    except TypeError:
        return False


def format_call(name: str, args: list, width: int = 80) -> str:
    """``name(a, b, c)`` on one line when short, otherwise one indented argument per line."""
    one = f"{name}({', '.join(args)})"
    if len(one) <= width and "\n" not in one:
        return one
    inner = "\n".join(textwrap.indent(a, "  ") + "," for a in args)
    return f"{name}(\n{inner}\n)"


class _ShapeMismatch(Exception):
    """Raised by :func:`_converted` for a value of the wrong shape (``.shape`` holds the value's)."""

    def __init__(self, shape):
        super().__init__(shape)
        self.shape = shape


def _converted(value, target: Tensor):
    """``value`` as a fresh backend array of ``target``'s shape, dtype and device, or an exception.

    Raises :class:`_ShapeMismatch` for a wrong shape, and NumPy's ``ValueError``
    or ``TypeError`` for a value that is no array of numbers (a ragged list,
    strings, ``None``).  ``target`` is not touched.
    """
    array = value if backend.is_array(value) else np.asarray(value)
    if tuple(array.shape) != target.shape:
        raise _ShapeMismatch(tuple(array.shape))
    array = array.astype(target.dtype, copy=True)
    return backend.to_device(array, target.device)


def _repr_modules(value, around=()):
    """The repr of ``value`` showing only the Modules in it (through lists, tuples and dicts), or ``None``.

    ``around``: the ids of the containers being shown, so that a list holding itself is shown once.
    """
    if isinstance(value, Module):
        return repr(value)
    if id(value) in around:
        return None
    inner = around + (id(value),)
    if isinstance(value, dict):
        shown = [(k, _repr_modules(v, inner)) for k, v in value.items()]
        items, brackets = [f"{k!r}: {r}" for k, r in shown if r is not None], "{}"
    elif isinstance(value, (list, tuple)):
        items = [r for r in (_repr_modules(v, inner) for v in value) if r is not None]
        brackets = "[]" if isinstance(value, list) else "()"
        if isinstance(value, tuple) and len(items) == 1:
            items[0] += ","
    else:
        return None
    if not items:
        return None
    one = brackets[0] + ", ".join(items) + brackets[1]
    if len(one) <= 60 and "\n" not in one:
        return one
    inner = "\n".join(textwrap.indent(item, "  ") + "," for item in items)
    return f"{brackets[0]}\n{inner}\n{brackets[1]}"


def _direct_modules(items):
    """The Modules among (name, value) pairs, looking into lists, tuples and dicts but not into Modules."""
    stack, entered = [v for _, v in reversed(list(items))], set()
    while stack:
        value = stack.pop()
        if isinstance(value, Module):
            yield value
        elif isinstance(value, (dict, list, tuple)) and id(value) not in entered:   # a list may hold itself
            entered.add(id(value))
            stack.extend(reversed(list(value.values() if isinstance(value, dict) else value)))


def missing_state_names(items, present) -> list:
    """The names of ``items`` (``(name, tensor)`` pairs, as :meth:`Module._state_items` lists them) that
    ``present`` lacks, leaving out a shared tensor that another of its names carries.

    A tied weight saved under one name only (as state dicts listed it before shared tensors were
    listed under every name) still loads: its other names get the same values through the tie.
    """
    carried = {id(t) for name, t in items if name in present}
    return [name for name, t in items if name not in present and id(t) not in carried]


def _refuse_assignment(module, name, value, label, expected):
    """The TypeError for assigning ``value`` to the name of a parameter (buffer), in PyTorch's words."""
    cls = type(value)
    raise TypeError(f"{type(module).__name__}: cannot assign '{cls.__module__}.{cls.__qualname__}' "
                    f"as {label} '{name}' ({expected} or None expected)")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
