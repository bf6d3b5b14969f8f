"""Tests for minifb.serialization: save/load round trip and strict refusal."""

import os
import re

import numpy as np
import pytest

import minifb as mf
from minifb import backend, nn, serialization
from minifb.nn.module import Buffer, Module, Parameter


class Block(Module):
    """A small module with a nested list, a dict and a buffer (names like ``blocks.0.w``)."""

    def __init__(self, n_in=3, n_out=2, depth=2, seed=0):
        rng = np.random.default_rng(seed)
        self.blocks = [Tiny(n_in if i == 0 else n_out, n_out, rng) for i in range(depth)]
        self.extra = {"scale": Parameter(rng.standard_normal(n_out).astype(np.float32))}
        self.running = Buffer(rng.standard_normal(n_out).astype(np.float32))


class Tiny(Module):
    def __init__(self, n_in, n_out, rng):
        self.w = Parameter(rng.standard_normal((n_out, n_in)).astype(np.float32))
        self.b = Parameter(rng.standard_normal(n_out).astype(np.float32))


def values(module):
    return {k: v.numpy() for k, v in module.state_dict().items()}


def test_round_trip(tmp_path):
    src, dst = Block(seed=0), Block(seed=1)
    path = tmp_path / "block.npz"
    assert serialization.save(src, path) == str(path)
    params_before = dst.parameters()
    assert serialization.load(dst, path) is dst
    a, b = values(src), values(dst)
    assert sorted(a) == sorted(b) == sorted(
        ["blocks.0.w", "blocks.0.b", "blocks.1.w", "blocks.1.b", "extra.scale", "running"])
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert b[k].dtype == np.float32
    # the parameter objects are kept, so an optimiser built before the load still sees them
    assert all(p is q for p, q in zip(params_before, dst.parameters()))
    # the file is plain NumPy: readable without minifb and without pickle
    with np.load(path, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["blocks.1.w"], a["blocks.1.w"])


def test_exact_path_without_suffix(tmp_path):
    path = tmp_path / "checkpoint"
    serialization.save(Block(), path)
    assert path.exists()
    serialization.load(Block(seed=5), path)


def test_refuses_mismatch_and_lists_every_difference(tmp_path):
    path = tmp_path / "block.npz"
    serialization.save(Block(n_in=3, n_out=2, depth=2), path)
    other = Block(n_in=4, n_out=2, depth=3)  # blocks.0.w differs in shape, blocks.2.* are missing
    before = values(other)
    with pytest.raises(ValueError) as info:
        serialization.load(other, path)
    msg = str(info.value)
    assert "missing names" in msg and "blocks.2.w" in msg and "blocks.2.b" in msg
    assert "shape differences" in msg and "blocks.0.w: file (2, 3) vs module (2, 4)" in msg
    assert "unexpected" not in msg
    after = values(other)
    for k in before:  # nothing changed
        np.testing.assert_array_equal(before[k], after[k])

    smaller = Block(n_in=3, n_out=2, depth=1)
    with pytest.raises(ValueError) as info:
        serialization.load(smaller, path)
    msg = str(info.value)
    assert "unexpected names" in msg and "blocks.1.w" in msg and "blocks.1.b" in msg
    assert "missing" not in msg


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="Module"):
        serialization.save(np.zeros(3), tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: .*absent\.npz"):
        serialization.load(Block(), tmp_path / "absent.npz")


def test_converts_dtype_to_the_module(tmp_path):
    path = tmp_path / "f64.npz"
    src = Block()
    np.savez(path, **{k: v.astype(np.float64) for k, v in values(src).items()})
    dst = serialization.load(Block(seed=3), path)
    for k, v in values(dst).items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, values(src)[k])


def test_real_layers_round_trip(tmp_path):
    nn = pytest.importorskip("minifb.nn")
    if not hasattr(nn, "Dense") or not hasattr(nn, "Chain"):
        pytest.skip("nn layers not available")
    a = nn.Chain(nn.Dense(4, 3), nn.Dense(3, 2))
    b = nn.Chain(nn.Dense(4, 3), nn.Dense(3, 2))
    serialization.save(a, tmp_path / "chain.npz")
    serialization.load(b, tmp_path / "chain.npz")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    with pytest.raises(ValueError, match="shape differences"):
        serialization.load(nn.Chain(nn.Dense(4, 3), nn.Dense(3, 5)), tmp_path / "chain.npz")


@pytest.mark.skipif(not backend.cuda_available(), reason="needs CuPy and a GPU")
def test_loads_onto_the_module_device(tmp_path):
    path = tmp_path / "block.npz"
    serialization.save(Block(seed=0), path)
    gpu = Block(seed=1).to("cuda")
    serialization.load(gpu, path)
    assert all(p.device == "cuda" for p in gpu.parameters())
    serialization.save(gpu, tmp_path / "from_gpu.npz")  # saving from the GPU gives NumPy arrays
    cpu = serialization.load(Block(seed=2), tmp_path / "from_gpu.npz")
    for k, v in values(cpu).items():
        np.testing.assert_array_equal(v, values(Block(seed=0))[k])


@pytest.mark.parametrize("name", ["file", "allow_pickle"])
def test_names_that_are_savez_keywords_round_trip(tmp_path, name):
    def make(value):
        module = Module()
        setattr(module, name, Parameter(np.full(2, value, np.float32)))
        module.other = Parameter(np.full(3, value, np.float32))
        return module

    path = serialization.save(make(1.5), tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as f:                # still a plain .npz
        assert sorted(f.files) == sorted([name, "other"])
        np.testing.assert_array_equal(f[name], [1.5, 1.5])
    dst = serialization.load(make(0.0), path)
    np.testing.assert_array_equal(getattr(dst, name).numpy(), [1.5, 1.5])
    np.testing.assert_array_equal(dst.other.numpy(), [1.5, 1.5, 1.5])


def test_docstring_examples_run():
    import doctest

    import minifb as mf
    from minifb import nn

    result = doctest.testmod(serialization, extraglobs={"mf": mf, "nn": nn, "np": np})
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("content", [b"not a weights file\n", b"", b"PK\x03\x04truncated", "npy"])
def test_load_refuses_a_file_that_is_not_an_npz_archive(content, tmp_path):
    path = tmp_path / "weights.npz"
    if content == "npy":  # a single array, not an archive of named arrays
        with open(path, "wb") as fh:
            np.save(fh, np.zeros(3))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a minifb weights file") as info:
        serialization.load(Block(), path)
    assert "allow_pickle" not in str(info.value)


def _write_npz(path, arrays, allow_pickle=False):
    """Write ``arrays`` as an .npz archive the way ``save`` does, pickling object arrays if allowed."""
    import zipfile
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=allow_pickle)


def _load_is_refused_and_changes_nothing(path, key):
    """Load ``path`` into a fresh Block: a ValueError naming the file and ``key``, every value as it was.
    Returns the message."""
    dst = Block(seed=1)
    before = values(dst)
    with pytest.raises(ValueError) as info:
        serialization.load(dst, path)
    message = str(info.value)
    assert str(path) in message and key in message
    for k, v in values(dst).items():
        np.testing.assert_array_equal(v, before[k])
    return message


def test_load_names_the_file_and_key_of_an_object_array_and_changes_nothing(tmp_path):
    src = Block(seed=0)
    arrays = values(src)
    arrays["blocks.1.b"] = np.array([{}, {}], dtype=object)   # only readable by unpickling
    path = tmp_path / "pickled.npz"
    _write_npz(path, arrays, allow_pickle=True)
    message = _load_is_refused_and_changes_nothing(path, "blocks.1.b")
    assert "allow_pickle" not in message


def test_load_names_the_file_and_key_of_a_value_that_cannot_be_converted(tmp_path):
    arrays = values(Block(seed=0))
    arrays["blocks.0.b"] = np.array(["a", "b"])           # the right shape, but strings
    path = tmp_path / "strings.npz"
    _write_npz(path, arrays)
    _load_is_refused_and_changes_nothing(path, "blocks.0.b")   # blocks.0.w, before the bad key, unchanged too


# ---- bad arguments (audit) ---------------------------------------------------------------------------
@pytest.mark.parametrize("fn", ["save", "load"])
def test_a_directory_is_refused_naming_the_function_and_path(fn, tmp_path):
    with pytest.raises(IsADirectoryError, match=rf"^{fn}: path '{tmp_path}' is a directory, not a weights file"):
        getattr(serialization, fn)(Block(), tmp_path)


@pytest.mark.parametrize("fn", ["save", "load"])
def test_a_path_that_is_not_a_path_is_refused(fn):
    with pytest.raises(TypeError, match=rf"^{fn}: path must be a str, bytes or an os.PathLike, got NoneType"):
        getattr(serialization, fn)(Block(), None)


def test_an_optimiser_is_refused_by_save_and_load(tmp_path):
    net = nn.Dense(3, 2)
    opt = mf.optim.Adam(net.parameters())
    for fn in (mf.save, mf.load):
        with pytest.raises(TypeError, match=rf"^{fn.__name__}: expected an nn.Module, got Adam; keep an optimiser"):
            fn(opt, tmp_path / "opt.npz")
    assert not (tmp_path / "opt.npz").exists()


def test_a_failed_save_leaves_the_earlier_file_whole(tmp_path, monkeypatch):
    net = nn.Dense(3, 2)
    path = tmp_path / "ckpt.npz"
    mf.save(net, path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", broken)
    with pytest.raises(OSError, match="disk full"):
        mf.save(nn.Dense(3, 2), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def test_a_bytes_path_saves_and_loads(tmp_path):
    """``os.fspath`` accepts bytes, so save must too (it appended a str suffix to them and failed)."""
    block, copy = Block(), Block(seed=5)
    path = bytes(tmp_path / "block.npz")
    assert mf.save(block, path) == str(tmp_path / "block.npz")
    mf.load(copy, path)
    assert values(copy).keys() == values(block).keys()
    for name, a in values(block).items():
        np.testing.assert_array_equal(values(copy)[name], a, err_msg=name)


def test_save_into_a_missing_folder_names_save_and_the_folder(tmp_path):
    """It raised FileNotFoundError naming '<path>.tmp', without a ``save:`` prefix."""
    path = tmp_path / "nope" / "ckpt.npz"
    with pytest.raises(FileNotFoundError, match=rf"save: the folder {re.escape(repr(str(tmp_path / 'nope')))} "
                                                r"of '.*ckpt\.npz' does not exist"):
        mf.save(Block(), path)
    assert not (tmp_path / "nope").exists()


def test_save_leaves_a_users_file_named_like_its_temporary_alone(tmp_path):
    """The temporary was ``path + ".tmp"``: a user's file of that name was overwritten and then deleted. The
    saved file has the mode of any new file (not mkstemp's 0o600)."""
    path = tmp_path / "ckpt.npz"
    (tmp_path / "ckpt.npz.tmp").write_text("my notes")
    old = os.umask(0o022)
    try:
        mf.save(Block(), path)
    finally:
        os.umask(old)
    assert (tmp_path / "ckpt.npz.tmp").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz", "ckpt.npz.tmp"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    mf.load(Block(seed=3), path)


def test_saves_to_one_path_at_the_same_time_do_not_collide(tmp_path, monkeypatch):
    """A second save of the same path while a first is writing (another thread or process) shared the first's
    temporary file: the first then found it gone (FileNotFoundError) after writing into the second's file."""
    path = tmp_path / "ckpt.npz"
    real_write = np.lib.format.write_array
    inner = []

    def write_and_interleave(*args, **kwargs):
        if not inner:
            inner.append(1)
            mf.save(Block(seed=2), path)          # runs to its end while the outer save is half written
        return real_write(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_and_interleave)
    mf.save(Block(seed=1), path)
    monkeypatch.undo()
    loaded = mf.load(Block(seed=5), path)
    for name, a in values(Block(seed=1)).items():       # the save that finished last wins, whole
        np.testing.assert_array_equal(values(loaded)[name], a, err_msg=name)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


@pytest.mark.parametrize("damage", ["crc", "header"])
def test_load_of_a_damaged_archive_is_a_value_error_naming_load_and_the_file(tmp_path, damage):
    """A bad CRC or a bad local header raised zipfile.BadZipFile, not the documented ValueError."""
    path = tmp_path / "ckpt.npz"
    mf.save(Block(), path)
    raw = bytearray(path.read_bytes())
    if damage == "crc":
        raw[200:260] = bytes(b ^ 0xFF for b in raw[200:260])   # inside the first entry's data
    else:
        raw[40:50] = bytes(10)                                 # inside the first entry's local header
    path.write_bytes(bytes(raw))
    message = _load_is_refused_and_changes_nothing(path, "blocks.0.w")
    assert message.startswith(f"load: {str(path)!r} has values that cannot be read") and "damaged" in message
