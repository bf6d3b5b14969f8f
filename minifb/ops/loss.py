"""Loss functions fused into single ops, so their gradients are exact and cheap.

Cross-entropy fuses log-softmax with the negative log-likelihood: its
gradient with respect to the logits is simply ``softmax - onehot``.
"""

from .. import kernels
from ..backend import array_module, sum_array
from ..tensor import Function
from .activation import sigmoid_array
from .softmax import log_softmax_array


def _reduce(values, reduction):
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return sum_array(values)
    return values


def _reduction_scale(count, reduction):
    return 1.0 / max(count, 1) if reduction == "mean" else 1.0


class CrossEntropy(Function):
    """Softmax cross-entropy of logits (N, C) or (N, C, d...) against integer labels (N,) or (N, d...)."""

    def forward(self, logits, *, labels, reduction):
        self.reduction = reduction
        if logits.ndim == 2 and kernels.should_use(logits):
            losses, self.grad_rows = kernels.softmax_xent(logits, labels)
            self.moved = False
            return _reduce(losses, reduction)
        xp = array_module(logits)
        moved = logits.ndim > 2  # classes on axis 1: move them last
        if moved:
            logits = xp.moveaxis(logits, 1, -1)
        flat = logits.reshape(-1, logits.shape[-1])
        rows = xp.arange(flat.shape[0])
        logp = log_softmax_array(flat, axis=-1)
        flat_labels = labels.reshape(-1)
        losses = -logp[rows, flat_labels]
        if self.needs[0]:
            grad = xp.exp(logp)
            grad[rows, flat_labels] -= 1
            self.grad_rows = grad
        self.moved, self.shape = moved, logits.shape
        return _reduce(losses.reshape(labels.shape), reduction)

    def backward(self, grad):
        xp = array_module(grad)
        g = self.grad_rows
        n = g.shape[0]
        if self.reduction == "none":
            g = g * grad.reshape(-1, 1)
        else:
            g = g * (grad * grad.dtype.type(_reduction_scale(n, self.reduction)))
        if self.moved:
            g = xp.moveaxis(g.reshape(self.shape), -1, 1)
        return (g,)


class MSE(Function):
    """Mean (or summed) squared error ``(pred - target)²``."""

    def forward(self, pred, target, *, reduction):
        self.diff, self.reduction = pred - target, reduction
        return _reduce(self.diff * self.diff, reduction)

    def backward(self, grad):
        scale = _reduction_scale(self.diff.size, self.reduction)
        g = 2 * self.diff * (grad * grad.dtype.type(scale))
        return (g if self.needs[0] else None, -g if self.needs[1] else None)


class BCEWithLogits(Function):
    """Binary cross-entropy on logits: ``max(z,0) - z·y + log(1 + exp(-|z|))`` (stable)."""

    def forward(self, z, y, *, reduction):
        xp = array_module(z)
        self.z, self.y, self.reduction = z, y, reduction
        losses = xp.maximum(z, 0) - z * y + xp.log1p(xp.exp(-abs(z)))
        return _reduce(losses, reduction)

    def backward(self, grad):
        scale = grad * grad.dtype.type(_reduction_scale(self.z.size, self.reduction))
        gz = (sigmoid_array(self.z) - self.y) * scale if self.needs[0] else None
        gy = -self.z * scale if self.needs[1] else None
        return gz, gy
