"""The model factory of FeedbackNets.jl: LeNet-5 with and without feedback, and Spoerer et al.'s (2017) networks.

Every model here is a feedback network called one timestep at a time::

    net = models.spoerer("BLT")
    state = net.initial_state(x)           # zeros of the right shapes for x
    state, logits = net(state, x)          # one timestep

or, keeping the state for you, ``rnet = nn.Recur(net, net.initial_state(x))``
and ``logits = rnet(x)`` once per step (a loss over the steps trains by
backprop-through-time).  Make a new Recur for every batch: it starts from the
zero state, and resets every Recur inside the net too (as
``nn.reset_state(net)`` does).  The purely feedforward models (``lenet5`` and
Spoerer's ``B``, ``BK``, ``BF``) are FeedbackChains without feedback, so they
are called the same way; their state is the empty dict.

Models return **logits** (no softmax); use ``F.cross_entropy``.  Inputs are
NCHW batches of shape ``(N, channels, *input_size)``; a model checks this and
names the expected shape.  Unlike FeedbackNets.jl, every argument is honoured:
``channels``, ``input_size``, ``kernel``, ``features`` and ``classes`` all
change the network.

Sizes are bounded by the parameter count: a factory refuses, before
allocating anything, arguments that would give a model of more than
:data:`MAX_PARAMETERS` (``2**31 - 1``) trainable scalars, the most an int32
index (what the GPU kernels take) can address, 8 GiB of float32 weights.

================  ==========================================================
name              network
================  ==========================================================
``lenet5``        LeNet-5 (ReLU, padded first conv, 120-map conv, 84, classes)
``lenet5_fb``     LeNet-5 with two top-down ConvTranspose feedback paths
``spoerer-B``     two conv layers, bottom-up only
``spoerer-BK``    B with a larger kernel (``kernel + 2``)
``spoerer-BF``    B with more feature maps (``2 * features``)
``spoerer-BL``    B + lateral connections in both layers
``spoerer-BT``    B + top-down connection from layer 2 to layer 1
``spoerer-BLT``   B + lateral + top-down
================  ==========================================================

Example:
    >>> import minifb as mf
    >>> from minifb import models, nn
    >>> net = models.build("spoerer-BLT", classes=10)
    >>> x = mf.randn(8, 1, 28, 28)
    >>> rnet = nn.Recur(net, net.initial_state(x))
    >>> logits = [rnet(x) for _ in range(4)][-1]        # (8, 10)
"""

from __future__ import annotations

import operator

from . import checks
from . import functional as F
from . import nn
from .tensor import Tensor

__all__ = ["FeedbackModel", "lenet5", "lenet5_fb", "spoerer", "build", "MODEL_NAMES", "SPOERER_KINDS",
           "MAX_PARAMETERS"]

SPOERER_KINDS = ("B", "BK", "BF", "BL", "BT", "BLT")
MODEL_NAMES = ("lenet5", "lenet5_fb") + tuple(f"spoerer-{k}" for k in SPOERER_KINDS)
#: The most trainable scalars a factory builds (an int32 index's range; 8 GiB of float32 weights).
MAX_PARAMETERS = 2**31 - 1


class FeedbackModel(nn.FeedbackChain):
    """A FeedbackChain built by the factory: it knows the input shape it was made for.

    Behaves exactly as :class:`~minifb.nn.FeedbackChain` (``state, y =
    net(state, x)``, ``initial_state(x)``, ``splitnames()``, nesting), and in
    addition checks that ``x`` is an ``(N, channels, H, W)`` batch with
    ``(H, W) == input_size`` before running, so a wrong input gets one clear
    error instead of a shape error deep inside a layer.

    Args:
        *layers: as FeedbackChain.
        name: the factory name shown in errors (e.g. ``"spoerer-BLT"``).
        channels: expected input channels (``None``: not checked).
        input_size: expected ``(H, W)`` (``None``: not checked).

    Example:
        >>> net = models.lenet5_fb()            # a FeedbackModel for (N, 1, 28, 28) batches
        >>> x = mf.randn(2, 1, 32, 32)
        >>> net(net.initial_state(mf.randn(2, 1, 28, 28)), x)
        Traceback (most recent call last):
            ...
        ValueError: lenet5_fb: expected input of shape (N, 1, 28, 28) (channels=1, input_size=(28, 28)), got (2, 1, 32, 32)
    """

    def __init__(self, *layers, name: str = "FeedbackModel", channels: int | None = None,
                 input_size: tuple | None = None):
        super().__init__(*layers)
        self._name = name
        self._channels = channels
        self._input_size = input_size

    def _check_input(self, x):
        if self._channels is None and self._input_size is None:
            return
        expected = ("N", self._channels, *self._input_size)
        if not isinstance(x, Tensor):
            raise TypeError(f"{self._name}: the input must be a Tensor of shape {_show_shape(expected)}, "
                            f"got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self._channels or tuple(x.shape[2:]) != tuple(self._input_size):
            raise ValueError(f"{self._name}: expected input of shape {_show_shape(expected)} "
                             f"(channels={self._channels}, input_size={tuple(self._input_size)}), "
                             f"got {tuple(x.shape)}")

    def forward(self, state: dict, x: Tensor):
        """One timestep: ``(new_state, logits)``; see :class:`~minifb.nn.FeedbackChain`."""
        self._check_input(x)
        return super().forward(state, x)

    def initial_state(self, x: Tensor) -> dict:
        """Zero state for input ``x`` (checked first); see :meth:`FeedbackChain.initial_state`."""
        self._check_input(x)
        return super().initial_state(x)


def _show_shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


# ---- argument checks ---------------------------------------------------------------------
def _compact(pair: tuple):
    """``(a, a)`` as ``a`` (so reprs read ``Conv(32, 32, 3, padding=1)``), other pairs unchanged."""
    return pair[0] if pair[0] == pair[1] else pair


def _check_parameter_count(fn: str, count: int, arguments: dict) -> None:
    """Refuse, naming ``fn`` and its size arguments, a model of more than :data:`MAX_PARAMETERS` scalars.

    ``count`` is computed from the layer shapes before any layer is built (in exact Python ints), so that
    ``classes=10**30`` is a clear ValueError instead of NumPy's "Maximum allowed dimension exceeded" or
    a MemoryError.
    """
    if count > MAX_PARAMETERS:
        shown = ", ".join(f"{name}={value!r}" for name, value in arguments.items())
        raise ValueError(f"{fn}: {shown} would give {count} parameters, more than "
                         f"MAX_PARAMETERS = {MAX_PARAMETERS}; choose smaller sizes")


# ---- LeNet-5 --------------------------------------------------------------------------------
def _lenet_sizes(fn: str, input_size) -> dict:
    """Padding of the first conv and spatial sizes through LeNet-5 for ``input_size``.

    LeNet-5 was designed for 32x32 images; 28x28 MNIST digits reach that with a
    padding of 2 in the first 5x5 convolution.  Smaller inputs get more zero
    padding, so that the first layer is at least 28x28 and every later layer
    keeps its size (a 16x16 input gives the same layer sizes as 28x28).
    """
    h, w = checks.pair(fn, "input_size", input_size)

    def chain(n):
        pad = 2 + max(0, -(-(28 - n) // 2))  # 2, plus ceil((28 - n) / 2) below 28
        c1 = n + 2 * pad - 4    # 5x5 conv with that padding
        c2 = c1 // 2 - 4        # 2x2 pool, 5x5 conv
        c3 = c2 // 2 - 4        # 2x2 pool, 5x5 conv (the 120-map layer)
        return pad, c1, c2, c3

    (ph, h1, h2, h3), (pw, w1, w2, w3) = chain(h), chain(w)
    return {"pad": _compact((ph, pw)), "conv1": (h1, w1), "conv2": (h2, w2), "conv3": (h3, w3)}


def _lenet_layers(fn: str, channels, input_size, classes, feedback: bool, combine=operator.add) -> FeedbackModel:
    channels = checks.integer(fn, "channels", channels)
    classes = checks.integer(fn, "classes", classes)
    sizes = _lenet_sizes(fn, input_size)
    (h1, w1), (h2, w2), (h3, w3) = sizes["conv1"], sizes["conv2"], sizes["conv3"]
    # conv2's output (h2 x w2) back to conv1's (h1 x w1): stride 2, kernel chosen so the sizes meet,
    # (h2 - 1) * 2 + k = h1  (k = 10 for 28x28 input, as in FeedbackNets.jl)
    k_a = (h1 - 2 * (h2 - 1), w1 - 2 * (w2 - 1))
    # the 120-map layer (h3 x w3) back to conv2 (h2 x w2): stride 1, h3 - 1 + k = h2 (k = 10 for 28x28)
    k_b = (h2 - h3 + 1, w2 - w3 + 1)
    count = ((channels * 6 * 25 + 6) + (6 * 16 * 25 + 16) + (16 * 120 * 25 + 120)   # the three convolutions
             + (120 * h3 * w3 * 84 + 84) + (84 * classes + classes))                 # the two dense layers
    if feedback:
        count += (16 * 6 * k_a[0] * k_a[1] + 6) + (120 * 16 * k_b[0] * k_b[1] + 16)
    _check_parameter_count(fn, count, {"channels": channels, "input_size": checks.pair(fn, "input_size", input_size),
                                       "classes": classes})
    relu = F.relu
    conv1 = [nn.Conv(channels, 6, 5, relu, padding=sizes["pad"])]
    conv2 = [nn.Conv(6, 16, 5, relu)]
    conv3 = [nn.Conv(16, 120, 5, relu)]
    if feedback:
        k_a, k_b = _compact(k_a), _compact(k_b)
        conv1.append(nn.Merger("conv2", nn.ConvTranspose(16, 6, k_a, relu, stride=2), combine))
        conv2 += [nn.Splitter("conv2"),
                  nn.Merger("fc1", nn.ConvTranspose(120, 16, k_b, relu), combine)]
        conv3.append(nn.Splitter("fc1"))
    layers = [
        *conv1, nn.MaxPool(2),
        *conv2, nn.MaxPool(2),
        *conv3,
        nn.Flatten(),
        nn.Dense(120 * h3 * w3, 84, relu),
        nn.Dense(84, classes),
    ]
    return FeedbackModel(*layers, name=fn, channels=channels, input_size=checks.pair(fn, "input_size", input_size))


def lenet5(channels: int = 1, input_size=(28, 28), classes: int = 10) -> FeedbackModel:
    """LeNet-5 (LeCun et al., 1998) as FeedbackNets.jl's ``lenet5``, with ReLUs and a logit output.

    FeedbackNets.jl's default activation is tanh and its model ends in a
    softmax; minifb's losses take logits.

    Layers: ``Conv(channels, 6, 5, relu, padding=2)``, ``MaxPool(2)``,
    ``Conv(6, 16, 5, relu)``, ``MaxPool(2)``, ``Conv(16, 120, 5, relu)``,
    ``Flatten``, ``Dense(120·h·w, 84, relu)``, ``Dense(84, classes)``, where
    ``h x w`` is the 120-map layer's size (1x1 for 28x28 input).  Inputs
    smaller than 28x28 get a larger zero padding in the first convolution,
    ``2 + ceil((28 - H) / 2)``, so that the first layer is at least 28x28
    (29 along an odd side) and the later layers have their 28x28 sizes
    (LeNet-5 was designed for padded 32x32 images).  Built as a
    FeedbackChain without feedback so it is called like the feedback models;
    its state is ``{}``.

    Args:
        channels: input channels (a positive int, default 1).
        input_size: ``(H, W)`` (or an int), each a positive int (default
            ``(28, 28)``); below 28 the first convolution pads more.
        classes: number of logits (a positive int, default 10).

    Returns:
        A :class:`FeedbackModel`: ``state, logits = net(state, x)`` with ``x``
        of shape ``(N, channels, H, W)`` and ``logits`` ``(N, classes)``.

    Raises:
        ValueError: an argument is not a positive int (a pair for
            ``input_size``), or the sizes would give more than
            :data:`MAX_PARAMETERS` parameters.

    Example:
        >>> net = models.lenet5()
        >>> state, logits = net({}, mf.randn(2, 1, 28, 28))
        >>> logits.shape
        (2, 10)
    """
    return _lenet_layers("lenet5", channels, input_size, classes, feedback=False)


def lenet5_fb(channels: int = 1, input_size=(28, 28), classes: int = 10, combine=operator.add) -> FeedbackModel:
    """LeNet-5 with two top-down feedback paths, as FeedbackNets.jl's ``lenet5_fb``.

    Layer by layer (``+`` is ``operator.add``; all ReLU)::

        Conv(channels, 6, 5, padding=2)      # more padding below 28x28, as in lenet5
        Merger("conv2", ConvTranspose(16, 6, k_a, relu, stride=2), +)    # conv2 -> conv1
        MaxPool(2)
        Conv(6, 16, 5)
        Splitter("conv2")
        Merger("fc1", ConvTranspose(120, 16, k_b, relu), +)              # 120 maps -> conv2
        MaxPool(2)
        Conv(16, 120, 5)
        Splitter("fc1")
        Flatten, Dense(120·h·w, 84, relu), Dense(84, classes)

    The transposed kernels ``k_a``, ``k_b`` are chosen so that the feedback
    has exactly the size of the layer it joins (10 x 10 each for 28 x 28
    input, as in FeedbackNets.jl; other input sizes get the sizes that fit).
    The state is ``{"conv2": (N, 16, h2, w2), "fc1": (N, 120, h3, w3)}``.

    Args:
        channels: input channels.
        input_size: ``(H, W)`` (or an int); below 28 the first convolution pads more.
        classes: number of logits.
        combine: how each feedback path joins its layer, ``combine(x, feedback)``
            (FeedbackNets.jl's ``op``; default ``operator.add``).

    Returns:
        A :class:`FeedbackModel`; ``state, logits = net(state, x)``.

    Raises:
        ValueError: as :func:`lenet5` (the feedback kernels count too).
        TypeError: ``combine`` is not callable.

    Example:
        >>> net = models.lenet5_fb()
        >>> x = mf.randn(2, 1, 28, 28)
        >>> state, logits = net(net.initial_state(x), x)
        >>> state["conv2"].shape, state["fc1"].shape
        ((2, 16, 10, 10), (2, 120, 1, 1))
    """
    if not callable(combine):
        raise TypeError(f"lenet5_fb: combine must be a function of (x, feedback) such as operator.add, "
                        f"got {combine!r}")
    return _lenet_layers("lenet5_fb", channels, input_size, classes, feedback=True, combine=combine)


# ---- Spoerer, McClure & Kriegeskorte (2017) ---------------------------------------------------
def _lrn():
    """Local response normalisation as in the Spoerer models (and FeedbackNets.jl).

    They use TensorFlow's convention ``x / (1 + 1e-4 · Σ_window x²) ** 0.5`` over 5 channels;
    :class:`nn.LRN` follows PyTorch (``alpha / size``), so ``alpha = 5 · 1e-4`` gives the same.
    """
    return nn.LRN(5, alpha=5e-4, beta=0.5, k=1.0)


def spoerer(kind: str, channels: int = 1, input_size=(28, 28), kernel=3, features: int = 32,
            classes: int = 10) -> FeedbackModel:
    """A recurrent convolutional network of Spoerer, McClure & Kriegeskorte (2017).

    Two convolutional layers of ``features`` maps with ``kernel x kernel``
    same-padded bottom-up convolutions (B); each layer's output is taken after
    the ReLU (this is what the state records) and then normalised (LRN).
    2x2 max pooling sits between the layers; the readout is a global max pool
    and ``Dense(features, classes)``, returning logits (FeedbackNets.jl's
    readout ends in a sigmoid; here the loss applies it: a sigmoid
    cross-entropy for the multi-digit task, a softmax for one digit).
    Recurrent inputs are added before the ReLU at the next timestep:

    * L (lateral): ``Conv(features, features, kernel, padding=kernel//2)`` of
      the layer's own previous output, in both layers (state ``"l1"``, ``"l2"``);
    * T (top-down): ``ConvTranspose(features, features, 2, stride=2)`` from
      layer 2's previous output into layer 1 (state ``"l2"``); odd sizes get
      ``output_padding`` so the feedback matches layer 1 exactly.

    The lateral and top-down convolutions have no bias (the bottom-up one's
    bias already sits in the same sum; FeedbackNets.jl gives them one, so its
    BL, BT and BLT have 64, 32 and 96 more parameters).  The feedforward controls roughly
    match the recurrent models' parameter counts, as in the paper: ``BK``
    uses ``kernel + 2`` (5x5 for the default 3x3) and ``BF`` ``2 * features``
    (64 for the default 32).

    Args:
        kind: ``"B"``, ``"BK"``, ``"BF"``, ``"BL"``, ``"BT"`` or ``"BLT"`` (case-insensitive).
        channels: input channels.
        input_size: ``(H, W)`` (or an int); each at least 2 (for the pooling).
        kernel: odd bottom-up/lateral kernel size (int or pair), so that
            "same" padding is symmetric.
        features: feature maps per layer.
        classes: number of logits.

    Returns:
        A :class:`FeedbackModel`; ``state, logits = net(state, x)`` with ``x``
        of shape ``(N, channels, H, W)``, ``logits`` ``(N, classes)``.

    Raises:
        ValueError: an unknown ``kind``, an argument that is not a positive
            int (a pair for ``input_size`` and ``kernel``), an even kernel, a
            side of ``input_size`` under 2, or sizes that would give more
            than :data:`MAX_PARAMETERS` parameters (``input_size`` does not
            change the count).

    Example:
        >>> net = models.spoerer("BLT", features=16)
        >>> x = mf.randn(4, 1, 28, 28)
        >>> state = net.initial_state(x)        # {"l1": (4, 16, 28, 28), "l2": (4, 16, 14, 14)}
        >>> state, logits = net(state, x)
    """
    fn = f"spoerer({kind!r})"
    if not isinstance(kind, str) or kind.upper() not in SPOERER_KINDS:
        raise ValueError(f"spoerer: kind must be one of {', '.join(SPOERER_KINDS)}, got {kind!r}")
    kind = kind.upper()
    channels = checks.integer(fn, "channels", channels)
    features = checks.integer(fn, "features", features)
    classes = checks.integer(fn, "classes", classes)
    kernel = checks.pair(fn, "kernel", kernel)
    if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
        raise ValueError(f"{fn}: kernel must be odd so that 'same' padding is symmetric, got {kernel}")
    h, w = checks.pair(fn, "input_size", input_size)
    if h < 2 or w < 2:
        raise ValueError(f"{fn}: input_size {(h, w)} is too small for the 2x2 max pooling between the "
                         "layers (each side must be at least 2)")
    arguments = {"channels": channels, "kernel": _compact(kernel), "features": features, "classes": classes}
    if kind == "BK":
        kernel = (kernel[0] + 2, kernel[1] + 2)
    if kind == "BF":
        features = 2 * features
    lateral, topdown = "L" in kind, "T" in kind
    taps = kernel[0] * kernel[1]
    count = (channels * features * taps + features) + (features * features * taps + features)   # bottom-up
    count += 2 * features * features * taps if lateral else 0    # two lateral convolutions, no bias
    count += features * features * 2 * 2 if topdown else 0       # the 2x2 transposed convolution, no bias
    count += features * classes + classes                        # the readout
    _check_parameter_count(fn, count, arguments)
    pad = _compact((kernel[0] // 2, kernel[1] // 2))
    kernel = _compact(kernel)
    relu = F.relu

    def bottom_up(c_in, recurrent: bool):
        # with recurrent inputs the ReLU comes after they are added in
        return nn.Conv(c_in, features, kernel, None if recurrent else relu, padding=pad)

    def lateral_merger(name):
        return nn.Merger(name, nn.Conv(features, features, kernel, padding=pad, bias=False), operator.add)

    layers = [bottom_up(channels, lateral or topdown)]
    if lateral:
        layers.append(lateral_merger("l1"))
    if topdown:
        layers.append(nn.Merger("l2", nn.ConvTranspose(features, features, 2, stride=2,
                                                       output_padding=_compact((h % 2, w % 2)), bias=False),
                                operator.add))
    if lateral or topdown:
        layers.append(nn.Lambda(relu))
    if lateral:
        layers.append(nn.Splitter("l1"))
    layers += [_lrn(), nn.MaxPool(2), bottom_up(features, lateral)]
    if lateral:
        layers += [lateral_merger("l2"), nn.Lambda(relu)]
    if lateral or topdown:
        layers.append(nn.Splitter("l2"))
    layers += [_lrn(), nn.GlobalMaxPool(), nn.Flatten(), nn.Dense(features, classes)]
    return FeedbackModel(*layers, name=f"spoerer-{kind}", channels=channels, input_size=(h, w))


# ---- by name -----------------------------------------------------------------------------------
def build(name: str, **kwargs) -> FeedbackModel:
    """Build a model by name (one of :data:`MODEL_NAMES`), passing the keyword arguments on.

    Args:
        name: ``"lenet5"``, ``"lenet5_fb"`` or ``"spoerer-<kind>"`` with kind in
            B, BK, BF, BL, BT, BLT (the kind is case-insensitive).
        **kwargs: the factory's arguments (``channels``, ``input_size``,
            ``classes``; for Spoerer models also ``kernel``, ``features``).

    Returns:
        The model.

    Example:
        >>> net = models.build("spoerer-BT", classes=7, input_size=(32, 32))
    """
    if not isinstance(name, str):
        raise TypeError(f"build: name must be a string, got {name!r}")
    if name in ("lenet5", "lenet5_fb"):
        factory = lenet5 if name == "lenet5" else lenet5_fb
        allowed = ("channels", "input_size", "classes")
    elif name.startswith("spoerer-") and name[len("spoerer-"):].upper() in SPOERER_KINDS:
        kind = name[len("spoerer-"):]
        allowed = ("channels", "input_size", "kernel", "features", "classes")

        def factory(**kw):
            return spoerer(kind, **kw)
    else:
        raise ValueError(f"build: unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"build({name!r}): unexpected arguments {unknown}; it takes {', '.join(allowed)}")
    return factory(**kwargs)
