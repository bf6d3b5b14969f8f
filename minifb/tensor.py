"""The Tensor and the tape: how reverse-mode autodiff works.

A :class:`Tensor` wraps a backend array (NumPy or CuPy).  Every differentiable
operation is a :class:`Function` subclass with a ``forward`` on raw arrays and a
``backward`` that maps the gradient of the output to gradients of the inputs.
Calling ``SomeOp.apply(*tensors)`` runs the forward and, when any input needs a
gradient and recording is on, stores the op instance on the output tensor
(``tensor._ctx``).  The op instance remembers the *nodes* of its inputs (the op
that produced each input, or the input itself when it is a leaf), so the ops
and leaves form a graph: that graph is the *tape*.  The tape holds no
intermediate array itself: one stays alive only while an op has saved it for
its backward (or the user keeps the tensor), which is what keeps the memory of
backprop-through-time down to what the gradients really need.

``loss.backward()`` walks the graph from the loss in reverse topological order
(an explicit stack, not recursion, so a 10,000-step backprop-through-time graph
is fine), calls each op's ``backward`` once with the summed gradient of its
output, and adds the results into ``.grad`` of the leaf tensors (a sum of
several gradients is accumulated in place once it has its own buffer).  Each
op's saved arrays are released as soon as its backward has run.

This module knows almost no particular op: the arithmetic operators and
methods of ``Tensor`` are attached in :mod:`minifb.methods`.  The two
exceptions are :meth:`Tensor.to`, which imports and applies
:class:`minifb.ops.movement.ToDevice`, and the two deferred gradients that
:meth:`Tensor.backward` sums and evaluates: :class:`ProductSum`, the weight
gradient :class:`minifb.ops.matmul.Linear` returns, and :class:`SliceSum`, the
gradient of a slice (``xs[t]``) that :class:`minifb.ops.movement.GetItem` returns.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import operator
import sys
import traceback

import numpy as np

from . import backend, checks
from .cpu_conv import product


class _Tape:
    """Whether operations are being recorded (switched off by :class:`no_grad`)."""

    enabled = True


class no_grad:
    """Context manager and decorator under which no operation is recorded.

    As a decorator it may be written with or without parentheses, and it also
    wraps generator functions: recording is off while the generator's body
    runs, and back to the caller's setting at each ``yield``.  Inside it every
    op's output has ``requires_grad=False`` and keeps no reference to its
    inputs, whatever their ``requires_grad``; the previous setting comes back
    on leaving, also after an exception, so the blocks nest, those of one
    instance too (``quiet = mf.no_grad()`` entered again inside itself).

    Args:
        fn: only with the bare decorator ``@no_grad``: the function or
            generator function to wrap (then ``no_grad(fn)`` returns the
            wrapped function).  ``with no_grad():`` and ``@no_grad()`` take no
            argument.

    Example:
        >>> x = mf.randn(3, requires_grad=True)
        >>> with mf.no_grad():
        ...     y = x * 2
        >>> y.requires_grad
        False
        >>> @mf.no_grad
        ... def double(x):
        ...     return x * 2
        >>> double(x).requires_grad
        False
    """

    def __new__(cls, fn=None):
        self = super().__new__(cls)
        self._previous = []   # the settings each open block of this instance found, innermost last
        return self if fn is None else self(fn)  # bare ``@no_grad``: decorate ``fn`` at once

    def __enter__(self):
        self._previous.append(_Tape.enabled)
        _Tape.enabled = False
        return self

    def __exit__(self, *exc):
        _Tape.enabled = self._previous.pop()
        return False

    def __call__(self, fn):
        """Decorate ``fn`` (a function or a generator function) to run under ``no_grad``."""
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def generator(*args, **kwargs):
                gen = fn(*args, **kwargs)
                try:
                    with no_grad():
                        value = next(gen)
                    while True:
                        try:
                            sent = yield value
                        except GeneratorExit:
                            with no_grad():
                                gen.close()
                            raise
                        except BaseException as err:
                            with no_grad():
                                value = gen.throw(err)
                        else:
                            with no_grad():
                                value = gen.send(sent)
                except StopIteration as stop:
                    return stop.value

            return generator

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)

        return wrapper


def is_grad_enabled() -> bool:
    """True unless inside :class:`no_grad`.

    Example:
        >>> mf.is_grad_enabled()
        True
        >>> with mf.no_grad():
        ...     mf.is_grad_enabled()
        False
    """
    return _Tape.enabled


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the adjoint of NumPy broadcasting.

    Broadcasting prepends axes and stretches size-1 axes; its backward sums over
    exactly those axes.
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        raise ValueError(f"gradient of shape {grad.shape} cannot be reduced to {tuple(shape)}")
    if extra:
        grad = backend.sum_array(grad, axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = backend.sum_array(grad, axis=stretched, keepdims=True)
    return grad.reshape(shape)


class Function:
    """Base class of every differentiable op.

    Subclasses implement::

        def forward(self, *arrays, **options) -> array
        def backward(self, grad) -> tuple      # one entry per input array

    ``self.needs`` (set before ``forward`` runs) says which inputs need a
    gradient, so ``forward`` saves only what ``backward`` will use and
    ``backward`` returns ``None`` for the others.  Gradients may have the
    broadcast shape of the output and the output's dtype: :meth:`apply`
    records each input's shape and dtype (``metas``), and
    :meth:`Tensor.backward` reduces each gradient to that shape with
    :func:`unbroadcast` and casts it to that dtype, in this one place.

    An op whose ``backward`` reads its own output (``exp``'s gradient is
    ``grad * out``) names the attribute that keeps it in the class attribute
    ``saved_output`` (``saved_output = "out"``); when ``forward`` has kept it
    there (not None), :meth:`apply` records the output's version as well
    (``out_meta``), and backward refuses the graph once the output has been
    updated in place, as it does for the inputs.  An op that keeps only its
    inputs leaves ``saved_output`` None: its output may be updated in place
    without harm to its gradient.

    Example (a new op, ``y = x ** 3``, written as the ops in :mod:`minifb.ops` are):
        >>> class Cube(mf.Function):
        ...     def forward(self, x):
        ...         self.x = x if self.needs[0] else None      # saved only when a gradient is wanted
        ...         return x ** 3
        ...     def backward(self, grad):
        ...         return (grad * 3 * self.x ** 2,)
        >>> x = mf.tensor([1.0, 2.0], requires_grad=True)
        >>> Cube.apply(x).sum().backward()
        >>> x.grad
        array([ 3., 12.], dtype=float32)
    """

    needs: tuple = ()
    parents: tuple = ()   # per input: the producing op, the leaf Tensor, or None (no gradient needed)
    metas: tuple = ()     # per input: (shape, dtype, version, counter) to reduce and cast its gradient; see apply
    saved_output: str | None = None   # the attribute where forward keeps its output for backward, if it does
    out_meta: tuple | None = None     # then the output's (shape, version, counter), recorded by apply

    def forward(self, *arrays, **options):  # pragma: no cover - interface
        """Compute the op's output array from its input arrays (saving what ``backward`` needs)."""
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - interface
        """Given the output's gradient, return one gradient (or ``None``) per input, in input order."""
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        """Run the op on tensors and record it on the tape when needed.

        The tape links an op to the *nodes* of its inputs, not to the input
        tensors themselves: the op that produced a non-leaf input, or the
        leaf tensor.  So an intermediate array stays alive only while
        something (an op's saved state, the user) still refers to it, as in
        PyTorch; the shapes and dtypes needed to reduce and cast gradients
        are kept beside, with each input's version (see :meth:`Tensor.backward`),
        and the output's own when the op keeps it (:attr:`saved_output`).
        An output that is a view of an input's memory shares that input's
        version counter.
        """
        op = cls()
        if _Tape.enabled:
            needs = op.needs = tuple([t._requires_grad for t in inputs])
        else:
            needs = op.needs = (False,) * len(inputs)
        datas = [t.data for t in inputs]
        out = op.forward(*datas, **options)
        # An output that views an input's memory (a slice, a reshape, a transpose) shares its version counter:
        # stepping a parameter changes its views too.
        out_base = getattr(out, "base", None)
        view_counter = None
        if True in needs:
            # Per input: (shape, dtype, version, counter) to reduce, cast and check its gradient. The counter is
            # that of the values the op read: the input's own (made now when it has none, so that a first in-place
            # update later is seen, a computed input's too: ``y -= 1`` under no_grad), or the one a view or a
            # detach() shares with the tensor it came from; backward refuses the graph when it has moved.
            parents, metas = [], []
            for t, needs_grad, data in zip(inputs, needs, datas):
                counter = t._shared
                if counter is None:   # a first recorded use (_version_counter, inlined): an in-place op may follow
                    counter = t._shared = [0]
                if view_counter is None and _views(out, out_base, data):
                    view_counter = counter
                parents.append((t if t._ctx is None else t._ctx) if needs_grad else None)
                metas.append((data.shape, data.dtype, counter[0], counter))
            op.parents, op.metas = tuple(parents), tuple(metas)
            saved = cls.saved_output
            if saved is not None and getattr(op, saved, None) is not None:
                # backward reads the output (exp, tanh, softmax, ...): record its version too, so that an
                # in-place update of it (``y -= 1`` under no_grad) is refused as one of an input is
                if view_counter is None:
                    view_counter = [0]
                op.out_meta = (out.shape, view_counter[0], view_counter)
            result = Tensor(out, requires_grad=True, _ctx=op)
        else:
            for t, data in zip(inputs, datas):
                if _views(out, out_base, data):   # made now if ``t`` has none: a write through the view must
                    view_counter = t._version_counter()   # reach ``t``, whether or not a recorded op read it yet
                    break
            result = Tensor(out)
        if view_counter is not None:
            result._shared = view_counter
        return result

    def release(self):
        """Drop everything saved for backward (called once backward has used it)."""
        self.__dict__.clear()
        self.parents = None

    def __repr__(self):
        return f"<{type(self).__name__}>"


def _views(out, out_base, data) -> bool:
    """Whether the array ``out`` is ``data`` or shares its memory: ``.base`` is the array that owns the memory
    a view looks at (NumPy and CuPy alike), so ``out`` views ``data``'s memory when it is ``data``'s own base
    or ``data`` itself; ``out_base`` is ``out.base``, looked up once per op."""
    return data is out if out_base is None else (data is out_base or data.base is out_base)


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    Args:
        data: a backend array, wrapped as it is (no copy, dtype kept); a
            Tensor, whose array is shared; a NumPy scalar (``np.float64(1.5)``),
            made a 0-d array of its own dtype; or other array-like data
            (numbers, nested lists), converted as :func:`minifb.tensor`
            converts it (a copy; floats become float32).
        requires_grad: whether gradients flow into this tensor (floating
            dtypes only).

    Attributes:
        data: the backend array (``numpy.ndarray`` or ``cupy.ndarray``); assigning anything else (None,
            a number, a list, a Tensor) raises TypeError.
        grad: a backend array of the same shape holding the accumulated
            gradient, or ``None``.
        requires_grad: whether gradients flow into this tensor.

    Example:
        >>> import minifb as mf
        >>> x = mf.tensor([1.0, 2.0, 3.0], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad
        array([2., 4., 6.], dtype=float32)
        >>> mf.Tensor([1.0, 2.0]).dtype
        dtype('float32')
    """

    __slots__ = ("_data", "grad", "_requires_grad", "_ctx", "_shared")
    __array_priority__ = 1000  # make numpy defer to Tensor's reflected operators

    def __init__(self, data, requires_grad: bool = False, _ctx: Function | None = None):
        # The version counter: a one-element list shared by the tensors that share these values (detach(),
        # Tensor(t), a view an op returns); None is version 0 until one is needed (a leaf gets one when a
        # recorded op first reads it)
        self._shared = None
        if not isinstance(data, _ARRAY_TYPES):  # ops pass backend arrays: one isinstance on that path
            if isinstance(data, Tensor):
                self._shared = data._version_counter()
            data = _as_array(data)
        self._data = data   # the slot itself: the .data setter's check is for users' assignments
        self.grad = None
        if requires_grad is not False and requires_grad is not True:   # two identity tests on the ops' path
            requires_grad = checks.flag("Tensor", "requires_grad", requires_grad)
        self._requires_grad = requires_grad
        self._ctx = _ctx
        if requires_grad and not _is_float(data):
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {data.dtype}")

    # ---- the version counter (see backward) -------------------------------
    @property
    def _version(self) -> int:
        """How many in-place updates (optimiser steps) these values have had."""
        shared = getattr(self, "_shared", None)  # unset while an older pickle (no _shared slot) loads
        return 0 if shared is None else shared[0]

    @_version.setter
    def _version(self, value: int) -> None:
        self._version_counter()[0] = value

    def _version_counter(self) -> list:
        """The shared counter, made now if this tensor has none yet."""
        if getattr(self, "_shared", None) is None:
            self._shared = [0]
        return self._shared

    # ---- plain properties -------------------------------------------------
    def _set_data(self, value) -> None:
        """``t.data = array``: a backend array (NumPy or CuPy) of any shape, dtype and device, as in PyTorch;
        a NumPy scalar becomes a 0-d array, as in ``Tensor(...)``.

        Raises:
            TypeError: anything else: None, a number, a list (use ``mf.tensor(...).data``), a Tensor (its
                ``.data``), which later reads of ``.shape``, ``.dtype`` or ``repr`` could not use.
        """
        if not isinstance(value, _ARRAY_TYPES):
            if isinstance(value, np.generic):   # what arithmetic on 0-d arrays returns (gradcheck's t.data = x + h)
                value = np.asarray(value)
            elif not backend.is_array(value):   # a CuPy array passes
                hint = (" (assign its .data)" if isinstance(value, Tensor)
                        else " (wrap it: mf.tensor(value).data)" if isinstance(value, (list, tuple, numbers.Number))
                        else "")
                raise TypeError(f"Tensor.data must be a backend array (a NumPy or CuPy ndarray), got "
                                f"{type(value).__name__}{hint}")
        self._data = value

    # The array.  A property, not a plain slot, so that assigning it is checked; its getter is the C-level
    # attrgetter: a read costs ~20 ns more than a slot's (11 -> 30 ns), and a CPU W1 step reads it 766 times,
    # ~15 us of its ~12.5 ms (0.1%; audit 14b, measured; the W1 runner's noise hid it both ways)
    data = property(operator.attrgetter("_data"), _set_data, doc="The backend array (NumPy or CuPy) of the values.")

    @property
    def shape(self) -> tuple:
        """The shape, a tuple of ints."""
        return self.data.shape

    @property
    def dtype(self):
        """The NumPy dtype of the elements."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.data.ndim

    @property
    def size(self) -> int:
        """Number of elements."""
        return self.data.size

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda"``."""
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        """True for tensors created by the user (not the output of a recorded op)."""
        return self._ctx is None

    def __len__(self):
        """The length of the first axis; a TypeError for a 0-d tensor, as in PyTorch."""
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        """Iterate over the first axis, yielding ``self[0], self[1], ...`` (differentiable, as indexing is).

        Raises:
            TypeError: the tensor is 0-d (as in PyTorch; NumPy's sequence fallback would
                silently yield nothing).
        """
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.data.shape[0]))

    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (copied from the GPU if needed).

        Args:
            none.

        Returns:
            A ``numpy.ndarray`` of the tensor's shape and dtype.  For a CPU
            tensor it is the tensor's own array, not a copy (as PyTorch's
            ``numpy()`` shares memory): writing into it changes the tensor.
            For a CUDA tensor it is a host copy.

        Example:
            >>> mf.tensor([[1.0, 2.0]]).numpy()
            array([[1., 2.]], dtype=float32)
        """
        return backend.to_numpy(self.data)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        return self._scalar("item")

    def _scalar(self, kind):
        if self.size != 1:
            raise ValueError(f"only one-element tensors can be converted to Python scalars, "
                             f"got shape {self.shape} ({kind}())")
        return self.data.item()

    def __float__(self):
        """``float(t)`` for a one-element tensor (``float(loss)``)."""
        return float(self._scalar("float"))

    def __int__(self):
        """``int(t)`` for a one-element tensor (truncates like ``int`` of a float)."""
        return int(self._scalar("int"))

    def __index__(self):
        """A 0-d integer tensor as a Python int where Python wants an index (``xs[t]``, ``range(t)``)."""
        if self.ndim != 0 or self.dtype.kind not in "iu":
            raise TypeError(f"only 0-d integer tensors can be used as an index, got shape {self.shape} "
                            f"and dtype {self.dtype}")
        return int(self.data)

    def __contains__(self, value):
        """``value in t``: whether any element equals ``value`` (a number or a tensor), as in PyTorch."""
        if not isinstance(value, (Tensor, numbers.Number)):
            raise TypeError(f"'in' needs a number or a Tensor, got {type(value).__name__}")
        return bool((self.data == (value.data if isinstance(value, Tensor) else value)).any())

    def __array__(self, dtype=None, copy=None):
        """The values for NumPy (``np.asarray(t)``), sharing memory where possible; CPU tensors only.

        A CUDA tensor raises TypeError rather than copying silently: use
        :meth:`numpy` (or ``.to("cpu")``) to copy it to the host.
        """
        if self.device != "cpu":
            raise TypeError(f"cannot convert a {self.device} tensor to a NumPy array implicitly; "
                            f"use .numpy() or .to('cpu') to copy it to host memory first")
        array = self.data
        if dtype is not None and array.dtype != dtype:
            if copy is False:
                raise ValueError(f"converting a tensor of dtype {array.dtype} to {np.dtype(dtype)} needs a copy")
            return array.astype(dtype)
        return array.copy() if copy else array

    def tolist(self):
        """The values as nested Python lists."""
        return self.numpy().tolist()

    def detach(self) -> "Tensor":
        """A tensor sharing the same values (and version counter) but cut from the tape.

        No gradient flows through the result into the graph that made this
        tensor: it is a leaf with ``requires_grad=False``.  Its array is this
        tensor's array (no copy), so an in-place update of one shows in the
        other; the shared version counter lets ``backward`` refuse a graph
        whose detached input was updated since (see :meth:`backward`).

        Args:
            none.

        Returns:
            A new Tensor of the same shape, dtype and device.

        Example:
            >>> x = mf.tensor([1.0, 2.0], requires_grad=True)
            >>> d = (x * 3).detach()
            >>> d, d.requires_grad, d.is_leaf
            (tensor([3., 6.]), False, True)
        """
        return Tensor(self)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        """Set ``requires_grad`` in place and return ``self``.

        Only a leaf may turn it off, as in PyTorch: switching it off on a computed
        tensor would silently cut the graph; use :meth:`detach` for that.
        """
        self._set_requires_grad("requires_grad_", flag)
        return self

    @property
    def requires_grad(self) -> bool:
        """Whether gradients flow into this tensor. Assigning it checks what :meth:`requires_grad_` checks."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag) -> None:
        self._set_requires_grad("requires_grad", flag)

    def _set_requires_grad(self, fn: str, flag) -> None:
        if not hasattr(self, "_ctx"):   # unpickling a tensor saved before the slot was _requires_grad
            self._requires_grad = flag
            return
        flag = checks.flag(fn, "flag", flag)
        if not flag and self._ctx is not None:
            raise RuntimeError(f"{fn}(False): only leaf tensors can stop requiring gradients; "
                               "use .detach() to cut a computed tensor from the graph")
        if flag and not _is_float(self.data):
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        self._requires_grad = flag

    def to(self, device: str) -> "Tensor":
        """Return this tensor on ``device`` (``"cpu"`` or ``"cuda"``); differentiable.

        Args:
            device: ``"cpu"`` or ``"cuda"`` (``"cuda:0"`` also reads as ``"cuda"``).

        Returns:
            ``self`` itself when it is already on ``device`` (no copy); otherwise
            a new Tensor of the same shape and dtype on ``device``, recorded on
            the tape when this tensor requires grad, so the gradient flows back
            to this device.

        Raises:
            ValueError: ``device`` is neither ``"cpu"`` nor ``"cuda"``.
            RuntimeError: ``device="cuda"`` without CuPy and a GPU.

        Example:
            >>> x = mf.ones(2, 3)
            >>> x.to("cpu") is x
            True
        """
        device = backend.check_device(device)
        if device == self.device:
            return self
        from .ops.movement import ToDevice

        return ToDevice.apply(self, device=device)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient."""
        self.grad = None

    def __repr__(self):
        body = np.array2string(self.numpy(), precision=4, separator=", ", threshold=1000, prefix="tensor(")
        extra = ""
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self.dtype != backend.DEFAULT_DTYPE:
            extra += f", dtype={self.dtype}"
        if self.size == 0 and self.ndim > 1:   # "[]" alone would hide the shape, as PyTorch shows it
            extra += f", size={self.shape}"
        if self._ctx is not None:
            extra += f", grad_fn={type(self._ctx).__name__}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __format__(self, spec):
        """``f"{t:.4f}"``: a one-element tensor formats like its Python number, as in PyTorch.

        An empty spec gives ``str(t)`` for any tensor.

        Raises:
            TypeError: a non-empty spec for a tensor of more (or fewer) than one element.

        Example:
            >>> loss = mf.tensor(0.25)
            >>> f"loss {loss:.3f}"
            'loss 0.250'
        """
        if not spec:
            return str(self)
        if self.size != 1:
            raise TypeError(f"format spec {spec!r} needs a one-element tensor, got shape {self.shape}; "
                            f"format its elements (t.tolist()) or use str(t)")
        return format(self.data.item(), spec)

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"the truth value of a tensor with {self.size} elements is ambiguous")
        return bool(self.data)

    def __hash__(self):  # tensors are graph nodes: identity, not value, is what matters
        return id(self)

    # ---- backward -----------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Back-propagate from this tensor, adding gradients into the leaves' ``.grad``.

        The ops keep references to the arrays they saved, not copies.  So, as
        in PyTorch, every tensor has a version counter that an in-place update
        (an optimiser's ``step()``, ``load_state_dict``, ``x -= y`` under
        ``no_grad``) increases, shared with
        the tensors that share its values: ``detach()``, ``Tensor(t)``, and the
        views ops return (an index, a reshape, a transpose). Each op records the
        versions of its inputs, and an op whose backward reads its own output
        (``exp``, ``sqrt``, ``relu``, ``sigmoid``, ``tanh``, ``softmax``,
        ``log_softmax``, the fused activations and LSTM step, a division or power
        whose right operand needs a gradient) the version of its output too;
        backward checks them all before it computes any gradient, refusing a
        graph with an op whose input, or kept output, changed since: the gradient
        would mix old and new values.  The usual cause is ``optimizer.step()``
        between a forward pass and its ``backward()``, or ``y -= ...`` under
        ``no_grad`` on ``y = x.exp()``.  Writing into ``.data``
        yourself (``p.data -= ...``) bypasses the counter, as it does in PyTorch.
        For inputs minifb is stricter than PyTorch: it checks every recorded
        input, not only those the op saved, so even ``(q + p).sum()`` refuses a
        backward after a step on ``p``.  An output is checked only where the op
        keeps it, as in PyTorch: ``y = x * w`` may be updated in place, since
        ``Mul``'s gradient does not read ``y``.

        Args:
            grad: the gradient of some scalar with respect to this tensor: a
                Tensor, array or number of the same shape (converted to this
                tensor's dtype and device); may be omitted when this tensor has
                one element.
            retain_graph: keep the ops' saved arrays so that backward can run
                through this graph again (default ``False``: they are freed as
                backward goes).

        Returns:
            None: each leaf ``t`` reached with ``requires_grad=True`` gets
            ``t.grad += dL/dt`` (a backend array of ``t``'s shape and dtype,
            created on the first backward), where ``L = sum(grad * self)``
            (``L = self`` when ``grad`` is omitted).

        Raises:
            RuntimeError: this tensor does not require grad (no input had
                ``requires_grad=True``, or it was computed under ``no_grad``);
                an input of a recorded op (a leaf, a computed tensor, or a
                ``detach()`` or a view of one), or the output of an op that keeps its output for its
                backward, was updated in place after the op ran (no ``.grad`` is changed
                then); or the graph was already freed by an earlier backward.
            ValueError: ``grad`` is omitted and this tensor does not have
                exactly one element; or ``grad``'s shape differs from this
                tensor's.
            TypeError: ``grad`` is complex and this tensor is not; ``grad``
                does not hold numbers (strings, None, booleans, a ragged list);
                ``retain_graph`` is not a bool.

        Example:
            >>> x = mf.tensor([1.0, 2.0], requires_grad=True)
            >>> (x * x).sum().backward()
            >>> x.grad
            array([2., 4.], dtype=float32)
            >>> (x * x).backward(mf.tensor([1.0, 0.5]))   # a non-scalar needs grad; .grad accumulates
            >>> x.grad
            array([4., 6.], dtype=float32)
        """
        if retain_graph is not False and retain_graph is not True:
            retain_graph = checks.flag("backward()", "retain_graph", retain_graph)
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input had requires_grad=True, or it was computed under no_grad)")
        xp = backend.array_module(self.data)
        if grad is None:
            if self.size != 1:
                raise ValueError(f"backward() without a gradient needs a one-element tensor, got shape {self.shape}")
            grad = xp.ones(self.shape, dtype=self.dtype)
        else:
            grad = backend.to_device(_seed_array(grad), self.device)
            if grad.shape != self.shape:
                raise ValueError(f"backward(): gradient shape {grad.shape} does not match tensor shape {self.shape}")
            if grad.dtype.kind == "c" and self.dtype.kind != "c":
                raise TypeError(f"backward(): a complex gradient (dtype {grad.dtype}) for a real tensor of dtype "
                                f"{self.dtype}; casting it would drop the imaginary part")
            if grad.dtype != self.dtype:  # gradients always have their tensor's dtype
                grad = grad.astype(self.dtype)

        try:
            _backprop(self if self._ctx is None else self._ctx, grad, retain_graph)
        except BaseException as err:
            # The walk's frames hold the whole graph and the pending gradients: a traceback the caller keeps
            # (pytest.raises, an interactive session's last error) would keep them alive. Drop their locals.
            traceback.clear_frames(err.__traceback__)
            raise


def _seed_array(grad):
    """``backward``'s ``grad`` (a Tensor, an array, a number or a nested list of numbers) as an array, refusing
    data that is not numbers: NumPy would read ``[None, None]`` as NaNs and ``True`` as 1."""
    if isinstance(grad, Tensor):
        grad = grad.data
    elif not hasattr(grad, "shape"):
        try:
            grad = np.asarray(grad)
        except ValueError:   # a ragged list
            raise TypeError(f"backward(): grad must be a Tensor, an array, a number or a nested list of numbers, "
                            f"got a ragged {type(grad).__name__}") from None
    if np.dtype(grad.dtype).kind not in "iufc":
        raise TypeError(f"backward(): grad must hold numbers, got dtype {grad.dtype}")
    return grad


def _backprop(root, grad, retain_graph: bool) -> None:
    """Walk the tape from ``root`` (an op, or a leaf Tensor) with ``grad`` as its gradient; see Tensor.backward."""
    # per node: how many consumers have not sent their gradient yet (a stepped graph is refused here)
    waiting = _count_consumers_checking_versions(root)
    pending = {id(root): grad}         # gradients of nodes (ops, or leaf tensors) not processed yet
    owned = set()                      # keys whose pending array was allocated here: add in place
    ready = [root]
    while ready:
        # Depth first among the ready nodes: each node runs as soon as all its consumers have, so its
        # summed gradient is freed at once (e.g. a weight's per-timestep gradients are folded into the
        # weight's one buffer step by step instead of all waiting until the end of BPTT).
        node = ready.pop()
        key = id(node)
        g = pending.pop(key, None)
        if type(g) in _DEFERRED:       # a deferred sum (of products, of slices): computed once now
            g = g.evaluate()
            owned.add(key)
        if isinstance(node, Tensor):   # a leaf
            if g is not None:
                _accumulate(node, g, fresh=key in owned)
                del g
            continue
        op = node
        if op.parents is None:
            if g is None:
                continue
            raise RuntimeError("backward through a graph whose saved values were already freed; "
                               "pass retain_graph=True to the first backward() if you need a second one, or, "
                               "when a recurrent state carries on from a window already back-propagated, "
                               "detach it first (rnet.detach(), nn.detach_state(model)): truncated BPTT; or an "
                               "nn.Recur's state0 computed by recorded ops (h, _ = net(h, x); nn.Recur(net, h)), "
                               "whose graph every reset() goes back into: build it under mf.no_grad() or pass "
                               "h.detach() / {k: v.detach() ...}; or an nn.LSTM or Recur inside the model still "
                               "holding the last batch's state: nn.reset_state(model)")
        ran = g is not None
        if ran:
            owned.discard(key)
            in_grads = op.backward(g)
            del g
            for parent, pg, meta in zip(op.parents, in_grads, op.metas):
                if parent is None:
                    continue
                shape, dtype = meta[0], meta[1]
                if pg is None:
                    continue
                if type(pg) in _DEFERRED and (pg.shape != shape or pg.dtype != dtype):
                    pg = pg.evaluate()
                if pg.shape != shape:
                    pg = unbroadcast(pg, shape)
                if pg.dtype != dtype:
                    pg = pg.astype(dtype)
                pkey = id(parent)
                previous = pending.get(pkey)
                if previous is None:
                    pending[pkey] = pg
                elif type(previous) in _DEFERRED or type(pg) in _DEFERRED:
                    pending[pkey] = _combine_deferred(previous, pg)
                    owned.discard(pkey)
                elif pkey in owned:
                    previous += pg
                    pending[pkey] = previous  # a 0-d NumPy sum is an immutable scalar: += rebinds it
                else:
                    pending[pkey] = previous + pg
                    owned.add(pkey)
            in_grads = pg = previous = None  # hold no extra reference (see _accumulate)
        parents = op.parents
        if ran and not retain_graph:
            op.release()
        for parent in parents:
            if parent is not None:
                pkey = id(parent)
                waiting[pkey] -= 1
                if waiting[pkey] == 0:
                    ready.append(parent)


class _DeferredSum:
    """A gradient kept as ``parts`` (plus ``extra``, an array that arrived already computed) until backward
    needs it: :func:`_backprop` sums two of a kind with :meth:`combine` and calls :meth:`evaluate` once.
    A kind says what a part is, how the parts are summed (``evaluate``) and how many elements they may
    hold before they are summed early (``limit``), so that the memory a deferred sum holds stays bounded."""

    __slots__ = ("parts", "extra", "shape", "dtype", "held")

    @classmethod
    def combine(cls, first, second):
        """The sum of two gradients, at least one of this kind (``first`` is reused when it is one)."""
        if type(first) is not cls:
            first, second = second, first
        if type(second) is cls:
            first.parts.extend(second.parts)
            first.held += second.held
            second = second.extra
        if second is not None:
            first.extra = second if first.extra is None else first.extra + second
        if first.held > first.limit():
            first.extra, first.parts, first.held = first.evaluate(), [], 0
        return first

    def limit(self) -> int:  # pragma: no cover - interface
        """How many elements the parts may hold before they are evaluated into ``extra``."""
        raise NotImplementedError

    def evaluate(self):  # pragma: no cover - interface
        """The sum as one fresh array."""
        raise NotImplementedError


class ProductSum(_DeferredSum):
    """A gradient kept as ``sum_i a_i @ b_i`` until it is needed, then computed as one matrix product.

    Under backprop-through-time a weight used at T timesteps receives T
    gradients ``dyₜᵀ @ xₜ``, each a product whose inner dimension is only the
    batch size, which BLAS runs far below its peak, plus T - 1 additions of a
    whole weight-sized array.  :class:`minifb.ops.matmul.Linear` returns its
    weight gradient as a ``ProductSum`` instead; ``backward`` merges those of one
    weight into one list and, when the weight's gradient is finally used,
    stacks the factors and runs a single product with inner dimension
    ``T * batch`` (``[a_1 .. a_T] @ [b_1; ..; b_T]``): W3's recurrent weight
    gradient 4.9 -> 2.1 ms per step (benchmarks/NOTES.md, P7).

    The factors are kept alive until then, so once they hold more than
    :data:`MAX_FACTOR_RATIO` times the elements of the result, the terms so far
    are evaluated into ``extra`` and dropped: the memory a deferred sum holds
    stays within a small multiple of the weight's own size, whatever T is.
    Except that the stacked product is always allowed an inner dimension of
    :data:`MIN_INNER` (that is, factors of ``MIN_INNER * (m + n)`` elements for an
    (m, n) result), since shorter products run far below BLAS's peak: for a
    small weight twice its size is only a few timesteps (W3's input weight was
    evaluated every 4 of its 32 timesteps, its output layer's every 3: 21
    evaluations a step, 4.4 ms; with the floor 6, 3.8 ms, for +0.3 MiB of peak
    memory; benchmarks/NOTES.md, session 10).

    Attributes:
        parts: list of ``(a, b)`` pairs, ``a`` of shape (m, k_i), ``b`` of shape (k_i, n).
        extra: an array added to the sum (a gradient that arrived already computed), or None.
        shape, dtype: those of the result.
    """

    __slots__ = ()

    #: Evaluate the pending terms once their factors hold this many times the result's elements ...
    MAX_FACTOR_RATIO = 2
    #: ... and more than this inner dimension's worth of factors, ``MIN_INNER * (m + n)`` elements.
    MIN_INNER = 512

    def __init__(self, a, b):
        self.parts, self.extra = [(a, b)], None
        self.shape = (a.shape[0], b.shape[1])
        self.dtype = np.result_type(a.dtype, b.dtype)  # dtypes alone: CuPy's result_type costs ~5 µs a call
        self.held = a.size + b.size

    def limit(self) -> int:
        """Factors of ``MAX_FACTOR_RATIO`` times the result's elements, or of an inner dimension of
        ``MIN_INNER``, whichever is more."""
        m, n = self.shape
        return max(ProductSum.MAX_FACTOR_RATIO * m * n, ProductSum.MIN_INNER * (m + n))

    def evaluate(self):
        """The sum as one fresh array."""
        if not self.parts:
            out = self.extra.copy()
        else:
            xp = backend.array_module(self.parts[0][0])
            if len(self.parts) == 1:
                a, b = self.parts[0]
                out = product(a, b)
            else:
                out = product(xp.concatenate([a for a, _ in self.parts], axis=1),
                              xp.concatenate([b for _, b in self.parts]))
            if self.extra is not None:
                out += self.extra
        if out.dtype != self.dtype:
            out = out.astype(self.dtype)
        return out


class SliceSum(_DeferredSum):
    """A gradient kept as pieces ``(index, g)`` of a zero array until it is needed, then written once.

    ``x[index]``'s gradient is zero outside the slice, so :class:`minifb.ops.movement.GetItem` with a basic
    index returns ``SliceSum(x.shape, index, g)`` instead of a whole zero array with ``g`` written in.
    Feeding a sequence ``xs`` one step at a time (``xs[0]``, ``xs[1]``, ... in :func:`minifb.nn.unroll`)
    then costs one array of ``xs``'s size in backward, rather than T of them (T^2 work in all).

    The parts are evaluated into ``extra`` once they hold more elements than the result, so a
    deferred sum never holds more than about twice the array's memory.

    Attributes:
        parts: list of ``(index, g)``, each ``g`` shaped as ``zeros(shape)[index]``.
        extra: an array added to the sum (a gradient that arrived already computed), or None.
        shape, dtype: those of the result.
    """

    __slots__ = ("xp",)

    def __init__(self, shape, index, g):
        self.parts, self.extra = [(index, g)], None
        self.shape, self.dtype, self.held = tuple(shape), g.dtype, g.size
        self.xp = backend.array_module(g)

    def limit(self) -> int:
        """The result's own number of elements."""
        return int(np.prod(self.shape))

    def evaluate(self):
        """The sum as one fresh array."""
        out = self.xp.zeros(self.shape, dtype=self.dtype)
        if self.extra is not None:
            out += self.extra
        for index, g in self.parts:
            out[index] += g
        return out


#: The deferred gradient types :func:`_backprop` sums without computing them.
_DEFERRED = (ProductSum, SliceSum)


def _combine_deferred(previous, new):
    """The sum of two pending gradients, at least one deferred; one of another kind is evaluated first."""
    if type(previous) in _DEFERRED and type(new) in _DEFERRED and type(previous) is not type(new):
        new = new.evaluate()
    kind = type(previous) if type(previous) in _DEFERRED else type(new)
    return kind.combine(previous, new)


#: :func:`_raise_modified`'s ``parent`` for an op's own output, which its backward reads.
_OUTPUT = object()


def _raise_modified(op, parent, version, shape, now):
    """The error for an op whose input was updated in place after the forward pass recorded it; ``parent`` is
    what the op records for that input: the leaf tensor, the op that made it (a view, a computed tensor), or None
    (no gradient); or :data:`_OUTPUT` for the op's own output, which it keeps for its backward."""
    if parent is _OUTPUT:
        raise RuntimeError(
            f"backward(): the output of {op!r} of shape {shape}, which its backward reads, was updated in place "
            f"after the forward pass made it (version {version} then, {now} now); backward through that graph "
            f"would compute gradients from the new values. Usually an in-place update of that result under "
            f"no_grad (y -= ..., or through a view or a detach() of it): write y = y - ... for a new tensor "
            f"instead, or run the forward pass again after the update")
    if isinstance(parent, Tensor):
        what = "a leaf tensor"
    elif parent is None:
        what = "a tensor that needs no gradient (a frozen weight, or a detach() or a view of a parameter)"
    else:
        what = f"a view (an index, a reshape, a transpose) of a parameter, or a computed tensor (made by {parent!r})"
    raise RuntimeError(
        f"backward(): {what} of shape {shape}, an input of {op!r}, was updated in place after the "
        f"forward pass used it (version {version} then, {now} now); backward through that graph "
        "would compute gradients from the new values. Usually an optimizer step (or an in-place x -= ... under "
        "no_grad) ran between the forward pass and backward(): call backward() first, or run the forward pass "
        "again after the step")


#: The backend array types ``Tensor`` wraps as they are; ``cupy.ndarray`` joins on first sight.
_ARRAY_TYPES = (np.ndarray,)


def _as_array(data):
    """The backend array for ``Tensor(data)`` when ``data`` is not one of :data:`_ARRAY_TYPES`.

    A Tensor gives its array (shared); a CuPy array is kept (and its type added to
    :data:`_ARRAY_TYPES`); a NumPy scalar becomes a 0-d array of its dtype; other
    array-like data is converted by :func:`minifb.tensor`, with its dtype defaults.
    """
    global _ARRAY_TYPES
    if isinstance(data, np.generic):  # what NumPy's full reductions return: checked first
        return np.asarray(data)
    if isinstance(data, Tensor):
        return data.data
    if backend.device_of(data) == "cuda":
        _ARRAY_TYPES = _ARRAY_TYPES + (type(data),)
        return data
    from .creation import tensor  # noqa: PLC0415 - creation builds on this module

    try:
        return tensor(data).data
    except (TypeError, OverflowError) as err:  # tensor() refuses what is not numbers; say which call it was
        raise type(err)("Tensor(): " + str(err).removeprefix("tensor: ")) from None


def data_of(value):
    """The backend array behind a Tensor, or ``value`` itself (an array, a list, a number)."""
    return value.data if isinstance(value, Tensor) else value


def check_tensor(fn: str, arg: str, value) -> None:
    """Refuse an argument that is not a Tensor, naming the function and the argument.

    Args:
        fn: the function's name, for the message. arg: the argument's name.
        value: what the caller passed.

    Raises:
        TypeError: ``value`` is not a Tensor (an array gets a hint to wrap it with ``mf.tensor``).
    """
    if not isinstance(value, Tensor):
        hint = " (wrap arrays with mf.tensor)" if hasattr(value, "shape") else ""
        raise TypeError(f"{fn}: argument {arg!r} must be a minifb Tensor, got {type(value).__name__}{hint}")


def _is_float(array) -> bool:
    return np.dtype(array.dtype).kind == "f"


def _accumulate(leaf: Tensor, g, fresh: bool = False) -> None:
    """Add ``g`` into ``leaf.grad``; on the first write, copy ``g`` unless nothing else can see its buffer.

    ``g`` is taken over as it is when it was allocated by ``backward`` itself
    (``fresh``), or when no other reference to it or to its memory exists:
    only ``backward``'s local name holds ``g``, and either ``g`` owns its
    memory or it is a NumPy view whose owner only ``g`` holds (a convolution's
    input gradient is an NCHW view of channels-last memory: taking it saves a
    transposing copy).  The view must also be writeable, cover all of that
    memory and have no zero strides.  Otherwise ``g`` is copied, so that
    ``.grad`` never shares a buffer with another gradient, a saved value or a
    reused scratch buffer.  The reference counts are compared with those of a
    private array measured once through the same calls (:data:`_PRIVATE_REFS`).
    """
    if isinstance(g, np.generic):  # a 0-d leaf's gradient is a 0-d array, as the contract says, not a scalar
        g, fresh = np.asarray(g), True
    if leaf.grad is not None:
        if getattr(leaf.grad, "shape", None) != g.shape:   # no silent broadcast into a .grad set by hand
            got = f"of shape {leaf.grad.shape}" if hasattr(leaf.grad, "shape") else f"(a {type(leaf.grad).__name__})"
            raise ValueError(f"backward(): cannot add the gradient of a leaf of shape {leaf.shape} into its .grad "
                             f"{got} (set by hand, or kept from before .data changed); .grad must have the "
                             f"leaf's shape: set it to None (zero_grad()) first")
        try:
            leaf.grad += g
        except TypeError:   # NumPy's "Cannot cast ufunc 'add' output ...": an integer .grad set by hand
            raise TypeError(f"backward(): cannot add the {g.dtype} gradient of a leaf of shape {leaf.shape} into "
                            f"its .grad of dtype {getattr(leaf.grad, 'dtype', '?')}; .grad must have the "
                            f"leaf's dtype: set it to None (zero_grad()) first") from None
        return
    if not fresh and _PRIVATE_REFS is not None:
        g_refs, base_refs = _refcounts(g)
        fresh = g_refs <= _PRIVATE_REFS[0] and (base_refs is None or (
            base_refs <= _PRIVATE_REFS[1] and type(g) is np.ndarray and type(g.base) is np.ndarray
            and g.base.base is None and g.flags.writeable and g.nbytes == g.base.nbytes
            and 0 not in [s for s, n in zip(g.strides, g.shape) if n > 1]))
    leaf.grad = g if fresh else g.copy()


def _refcounts(g) -> tuple:
    """``(references to g, references to g.base or None when it has none)``, as seen from here."""
    base = getattr(g, "base", None)
    return sys.getrefcount(g), None if base is None else sys.getrefcount(base)


def _private_refcounts():
    """What :func:`_refcounts` returns, called from :func:`_accumulate`, for an array that only
    ``backward``'s local name holds and that is a view of memory only it holds.

    Measured rather than assumed: the counts include the interpreter's own temporary references,
    and CPython 3.14 stopped counting some of those (it borrows them).  The caller frames below
    have the same shape as ``backward`` -> ``_accumulate``.  ``None`` where the interpreter has no
    reference counts (then every first gradient that is not ``fresh`` is copied).
    """
    def accumulate_like(leaf, g, fresh=False):
        return _refcounts(g)

    def backward_like():
        g = np.empty(4, dtype=np.float32).reshape(2, 2)  # a view; only it holds its owner
        counts = accumulate_like(None, g, fresh=False)
        del g
        return counts

    try:
        return backward_like()
    except AttributeError:  # no sys.getrefcount (not CPython)
        return None


#: ``(g's references, its owner's references)`` for a private view, as :func:`_accumulate` sees them.
_PRIVATE_REFS = _private_refcounts()


def _count_consumers_checking_versions(root) -> dict:
    """For each node reachable from ``root`` (ops, and leaf tensors): how many edges lead into it.

    An input used twice by one op (``x * x``) counts twice.  Iterative, so a
    10,000-step graph is fine.  On the way it checks every op's recorded input
    versions, and the output's of an op that keeps its output, so a graph whose
    values were updated in place since is refused (RuntimeError) before backward
    forms any gradient.
    """
    counts = {id(root): 0}
    stack = [root]
    while stack:
        node = stack.pop()
        parents = None if isinstance(node, Tensor) else node.parents
        if not parents:
            continue
        out_meta = node.out_meta
        if out_meta is not None and out_meta[2][0] != out_meta[1]:
            _raise_modified(node, _OUTPUT, out_meta[1], out_meta[0], out_meta[2][0])
        for parent, meta in zip(parents, node.metas):
            if meta is not None:
                shape, _, version, counter = meta
                if counter is not None and counter[0] != version:
                    _raise_modified(node, parent, version, shape, counter[0])
            if parent is None:
                continue
            key = id(parent)
            if key in counts:
                counts[key] += 1
            else:
                counts[key] = 1
                stack.append(parent)
    return counts
