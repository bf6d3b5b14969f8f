"""minifb: a small reverse-mode autodiff library for deep and convolutional networks with feedback.

The public names live here; see the README for a tour and for where to read each part.
"""

from . import backend, functional, methods  # noqa: F401  (methods binds Tensor's operators)
from .backend import cuda_available, manual_seed
from .creation import arange, full, ones, ones_like, rand, randn, tensor, zeros, zeros_like
from .functional import (
    concat, exp, gelu, leaky_relu, log, log_softmax, relu, sigmoid, softmax, softplus, sqrt, stack, tanh,
)
from .serialization import load, save
from .tensor import Function, Tensor, is_grad_enabled, no_grad

from . import models, nn, optim  # noqa: E402  (after the names above, which they use: mf.nn works as torch.nn does)

float32 = "float32"
float64 = "float64"

__all__ = [
    "Tensor", "Function", "tensor", "zeros", "ones", "full", "zeros_like", "ones_like", "arange", "randn",
    "rand", "manual_seed", "no_grad", "is_grad_enabled", "cuda_available", "relu", "sigmoid", "tanh",
    "softmax", "log_softmax", "leaky_relu", "softplus", "gelu", "exp", "log", "sqrt", "concat", "stack",
    "functional", "nn", "optim", "models", "float32", "float64", "save", "load",
]
__version__ = "0.1.0"
