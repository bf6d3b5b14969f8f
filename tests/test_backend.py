"""The backend: array modules and devices."""

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
