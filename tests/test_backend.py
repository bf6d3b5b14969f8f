"""The backend: array modules and devices."""

import re

import numpy as np
import pytest

import minifb as mf
from minifb import backend


def test_numpy_arrays_use_numpy():
    assert backend.array_module(np.zeros(2), 3.0, None) is np
    assert backend.device_of(np.zeros(2)) == "cpu"


def test_device_names():
    assert backend.check_device(None) == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        backend.check_device("metal")


def test_to_device_cpu_roundtrip():
    a = np.arange(3.0)
    assert backend.to_device(a, "cpu") is a


def test_rng_is_per_seed_deterministic():
    backend.manual_seed(3)
    a = backend.rng("cpu").random(3)
    backend.manual_seed(3)
    np.testing.assert_array_equal(a, backend.rng("cpu").random(3))


def test_manual_seed_takes_a_non_negative_integer():
    for bad in ("a", None, 1.5, -1, True):
        with pytest.raises(ValueError, match=r"manual_seed: seed must be an integer >= 0"):
            mf.manual_seed(bad)
    mf.manual_seed(np.int64(3))
    a = mf.randn(2).numpy()
    mf.manual_seed(3)
    np.testing.assert_array_equal(mf.randn(2).numpy(), a)


@pytest.mark.parametrize("real, cplx, want", [("float64", "complex64", "complex128"),
                                              ("float32", "complex64", "complex64"),
                                              ("float16", "complex128", "complex128"),
                                              ("int64", "complex64", "complex64")])
def test_a_complex_with_a_float_keeps_the_floats_precision(real, cplx, want):
    """PyTorch's promote_types: float64 with complex64 is complex128 (the category alone gave complex64)."""
    for a, b in ((real, cplx), (cplx, real)):
        assert backend.promote_types(a, b) == np.dtype(want)
    x = mf.tensor(np.ones(2), dtype=real)
    z = mf.tensor(np.ones(2, dtype=cplx))
    assert (x + z).dtype == np.dtype(want) and (z * x).dtype == np.dtype(want)
    torch = pytest.importorskip("torch")
    assert str(torch.promote_types(getattr(torch, real), getattr(torch, cplx))).removeprefix("torch.") == want


# ---------------------------------------------------------------- found by mutation testing (session 13)
class _FakeCupyArray:
    """Stands for a CuPy array: minifb recognises one by its type's module name."""

    __module__ = "cupy._core.core"


def test_mixing_cpu_and_gpu_arrays_is_an_error():
    with pytest.raises(ValueError, match="different devices"):
        backend.array_module(np.zeros(2), _FakeCupyArray())
    with pytest.raises(ValueError, match="different devices"):
        backend.array_module(_FakeCupyArray(), 1.0, np.zeros(2))


def test_a_numbered_cuda_device_is_cuda(monkeypatch):
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    with pytest.raises(RuntimeError, match="CuPy with a GPU is not available"):
        backend.check_device("cuda:0")
    monkeypatch.setattr(backend, "cuda_available", lambda: True)
    assert backend.check_device("cuda:0") == "cuda" and backend.check_device("cuda") == "cuda"


@pytest.mark.parametrize("available", [True, False])
@pytest.mark.parametrize("name", ["cudax", "cuda:1", "cuda:", "cuda0", "CUDA", "cpu:0", "", 0, False])
def test_only_cpu_cuda_and_cuda0_are_devices(monkeypatch, available, name):
    """Anything starting with "cuda" was taken for the GPU ("cudax", and "cuda:1" placed on GPU 0)."""
    monkeypatch.setattr(backend, "cuda_available", lambda: available)
    with pytest.raises(ValueError, match=rf"unknown device {re.escape(repr(name))}: expected 'cpu', 'cuda' or "
                                         r"'cuda:0'"):
        backend.check_device(name)


class _CupyLikeArray:
    """What backend.is_writable sees of a CuPy array: flags without ``writeable``, shape and strides."""

    class flags:                       # CuPy's Flags: c_contiguous, f_contiguous, owndata only
        c_contiguous = f_contiguous = owndata = False

    def __init__(self, shape, strides):
        self.shape, self.strides = shape, strides


def test_is_writable_refuses_a_broadcast_view_without_a_writeable_flag():
    # CuPy has no writeable flag and writes through stride-0 views; before, every CuPy array counted as writable
    assert backend.is_writable(np.zeros(3)) and not backend.is_writable(np.broadcast_to(np.zeros(3), (4, 3)))
    assert backend.is_writable(_CupyLikeArray((4, 3), (12, 4)))
    assert not backend.is_writable(_CupyLikeArray((4, 3), (0, 4)))        # cupy.broadcast_to(x, (4, 3))
    assert backend.is_writable(_CupyLikeArray((1, 3), (0, 4)))            # a zero stride on a length-1 axis
    assert backend.is_writable(_CupyLikeArray((), ()))


def test_is_writable_on_a_cuda_broadcast_view(device):
    src = mf.zeros(3, device=device)
    view = mf.functional.broadcast_to(src, (4, 3))
    assert not backend.is_writable(view.data)
    with pytest.raises(ValueError, match=r"\+=: the tensor of shape \(4, 3\) is a read-only array"):
        with mf.no_grad():
            view += 1.0
    assert src.numpy().tolist() == [0.0, 0.0, 0.0]
