"""Tests of minifb.train: the recurrent protocol (loss summed over T, BPTT, truncation), evaluation, train()."""

import json
import math
import os
import warnings

import numpy as np
import pytest

import minifb as mf
from minifb import functional as F
from minifb import data as mfdata
from minifb import models
from minifb import train as mftrain


def tiny(kind="BLT", seed=0, **kw):
    """A small Spoerer model for 8x8 images (4 feature maps), seeded."""
    mf.manual_seed(seed)
    return models.build(f"spoerer-{kind}", input_size=8, features=4, **kw)


def batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, size=n)


def grads(net):
    return [None if p.grad is None else p.grad.copy() for p in net.parameters()]


class NoStep:
    """An optimiser that only clears gradients, so train_step leaves them for inspection."""

    def __init__(self, params):
        self.params = list(params)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        pass


def manual_unroll(net, x, y, steps, detach_every=None):
    """The protocol written out by hand: state reset, T calls, per-step cross-entropy summed."""
    xt = mf.tensor(x)
    state = net.initial_state(xt)
    total, logits = None, []
    for t in range(steps):
        if detach_every is not None and t > 0 and t % detach_every == 0:
            state = {k: v.detach() for k, v in state.items()}
        state, out = net(state, xt)
        logits.append(out)
        loss_t = F.cross_entropy(out, y)
        total = loss_t if total is None else total + loss_t
    return total, logits


def test_sequence_loss_is_the_sum_over_timesteps():
    net = tiny()
    x, y = batch()
    loss, logits = mftrain.sequence_loss(net, x, y, steps=3)
    assert len(logits) == 3
    per_step = [float(F.cross_entropy(lg, y).data) for lg in logits]
    assert float(loss.data) == pytest.approx(sum(per_step), rel=1e-5)
    ref, ref_logits = manual_unroll(net, x, y, 3)
    assert float(loss.data) == pytest.approx(float(ref.data), rel=1e-5)
    # feedback makes later steps differ from the first
    assert not np.allclose(logits[0].numpy(), logits[-1].numpy())


def test_full_bptt_gradients_match_the_unrolled_graph():
    net = tiny()
    x, y = batch()
    loss, _ = mftrain.train_step(net, NoStep(net.parameters()), x, y, steps=3)
    got = grads(net)
    net.zero_grad()
    ref, _ = manual_unroll(net, x, y, 3)
    ref.backward()
    assert loss == pytest.approx(float(ref.data), rel=1e-5)
    for g, p in zip(got, net.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("k", [1, 2])
def test_truncation_detaches_the_state_every_k_steps(k):
    net = tiny()
    x, y = batch()
    loss, _ = mftrain.train_step(net, NoStep(net.parameters()), x, y, steps=4, truncate=k)
    got = grads(net)
    net.zero_grad()
    ref, _ = manual_unroll(net, x, y, 4, detach_every=k)
    ref.backward()
    assert loss == pytest.approx(float(ref.data), rel=1e-5)  # truncation changes gradients, not the loss
    for g, p in zip(got, net.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-4, atol=1e-6)
    # and the truncated gradient really differs from full BPTT
    net.zero_grad()
    mftrain.train_step(net, NoStep(net.parameters()), x, y, steps=4)
    assert any(not np.allclose(a, p.grad, rtol=1e-4, atol=1e-6) for a, p in zip(got, net.parameters()))


def test_feedforward_model_counts_its_single_answer_t_times():
    net = tiny("B")
    x, y = batch()
    loss, logits = mftrain.sequence_loss(net, x, y, steps=4)
    one = float(F.cross_entropy(logits[0], y).data)
    assert float(loss.data) == pytest.approx(4 * one, rel=1e-5)
    assert len(logits) == 4


def test_clipping_bounds_the_gradient_norm():
    net = tiny()
    x, y = batch()
    mftrain.train_step(net, NoStep(net.parameters()), x, y, steps=2, clip=1e-3)
    norm = np.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in net.parameters()))
    assert norm <= 1e-3 * 1.001


def test_multilabel_loss_is_binary_cross_entropy_and_accuracy_is_top_k():
    net = tiny()
    x, _ = batch(4)
    y = np.zeros((4, 10), np.float32)
    y[np.arange(4), [1, 2, 3, 4]] = 1
    y[np.arange(4), [5, 6, 7, 8]] = 1
    loss, logits = mftrain.sequence_loss(net, x, y, steps=2)
    expect = sum(float(F.binary_cross_entropy_with_logits(lg, mf.tensor(y)).data) for lg in logits)
    assert float(loss.data) == pytest.approx(expect, rel=1e-5)
    scores = np.full((2, 10), -1.0)
    scores[0, [3, 7]] = 5       # both right
    scores[1, [3, 9]] = 5       # one of two right
    labels = np.zeros((2, 10))
    labels[:, [3, 7]] = 1
    assert mftrain.accuracy(scores, labels) == pytest.approx(0.75)
    assert mftrain.accuracy(np.eye(3), np.array([0, 2, 2])) == pytest.approx(2 / 3)


def test_evaluate_gives_one_accuracy_per_timestep_and_restores_the_mode():
    net = tiny()
    x, y = batch(10)
    net.train()
    accs = mftrain.evaluate(net, x, y, steps=5, batch=4)
    assert len(accs) == 5 and all(0.0 <= a <= 1.0 for a in accs)
    assert net.training
    # the batch size does not change the answer
    assert mftrain.evaluate(net, x, y, steps=5, batch=10) == pytest.approx(accs)
    with pytest.raises(ValueError, match="steps"):
        mftrain.evaluate(net, x, y, steps=0)


def _per_step_accuracy_by_hand(net, x, y, steps):
    """The reference for evaluate: unroll the feedback model by hand from its zero state, in eval mode and
    without a tape, and compare NumPy's argmax of each step's logits with the labels."""
    was_training = net.training
    net.eval()
    accs = []
    with mf.no_grad():
        xt = mf.tensor(x)
        state = net.initial_state(xt)
        for _ in range(steps):
            state, logits = net(state, xt)
            accs.append(float(np.mean(np.argmax(logits.numpy(), axis=1) == y)))
    net.train(was_training)
    return accs


def test_evaluate_reports_each_timesteps_own_accuracy():
    ds = mfdata.load_digits(size=8)
    x, y = ds.x_test[:48], ds.y_test[:48]
    steps = 4
    for seed in range(20):     # an untrained model whose predictions change over the timesteps
        mf.manual_seed(seed)
        net = models.build("spoerer-BLT", input_size=8, features=4)
        want = _per_step_accuracy_by_hand(net, x, y, steps)
        if len(set(want)) > 1:
            break
    else:
        pytest.fail("no seed gives accuracies that change over the timesteps")
    # an uneven split into batches (20, 20, 8) must not change the per-step answers
    got = mftrain.evaluate(net, x, y, steps=steps, batch=20)
    assert got == pytest.approx(want, abs=1e-12)
    assert mftrain.evaluate(net, x, y, steps=steps, batch=48) == pytest.approx(want, abs=1e-12)


def test_training_learns_a_little():
    history = mftrain.train("spoerer-BT", limit=400, epochs=6, features=8, size=8, lr=1e-2, progress=False, log=None)
    epochs = history["epochs"]
    assert len(epochs) == 6
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert history["final"]["test_accuracy"][-1] > 0.5      # chance is 0.1


def test_train_writes_checkpoint_and_metrics(tmp_path):
    out = tmp_path / "run"
    history = mftrain.train("spoerer-BT", limit=40, epochs=1, steps=3, features=4, out=str(out),
                            progress=False, log=None, plot=False)
    assert set(history) >= {"config", "parameters", "epochs", "final", "seconds"}
    record = history["epochs"][0]
    assert set(record) >= {"epoch", "loss", "train_accuracy", "test_accuracy", "seconds"}
    assert len(record["test_accuracy"]) == 3
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["config"]["model_name"] == "spoerer-BT"
    assert saved["config"]["size"] == 16 == mftrain.default_size("spoerer-BT")
    mf.load(mftrain.build_model("spoerer-BT", 16, features=4), str(out / "model.npz"))


def test_corruption_is_applied_and_clean_accuracy_reported():
    history = mftrain.train("spoerer-B", limit=30, epochs=1, steps=2, features=4, size=8, corrupt="noise",
                            progress=False, log=None)
    assert len(history["epochs"][0]["clean_accuracy"]) == 2


def test_clutter_trains_multilabel():
    history = mftrain.train("spoerer-BT", limit=30, epochs=1, steps=2, features=4, size=8, corrupt="clutter",
                            progress=False, log=None)
    assert 0.0 <= history["final"]["test_accuracy"][-1] <= 1.0


def test_interrupt_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real = mftrain.train_step
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:           # the first epoch (2 batches of 16) finishes, the second is interrupted
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mftrain, "train_step", flaky)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        mftrain.train("spoerer-B", limit=32, batch=16, epochs=3, features=4, size=8, out=str(out), progress=False,
                      log=None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interrupted"] is True
    assert len(metrics["epochs"]) == 1 and metrics["checkpoint_epoch"] == 1
    assert os.path.isfile(out / "model.npz")


def test_interrupt_never_leaves_an_earlier_runs_files(tmp_path, monkeypatch):
    """Ctrl-C before the first checkpoint: an earlier run's weights must not sit beside this run's metrics."""
    out = tmp_path / "run"
    mftrain.train("spoerer-B", limit=16, epochs=1, steps=2, features=4, size=8, out=str(out), progress=False,
                  log=None)
    (out / "curves.png").write_bytes(b"an earlier run's plot")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mftrain, "train_step", interrupted)
    record = {}
    with pytest.raises(KeyboardInterrupt):
        mftrain.train("spoerer-BT", limit=16, epochs=1, steps=2, features=4, size=8, out=str(out),
                      progress=False, log=None, history=record)
    assert not (out / "model.npz").exists() and not (out / "curves.png").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model_name"] == "spoerer-BT" and metrics["interrupted"] is True
    assert metrics["epochs"] == [] and "checkpoint_epoch" not in metrics
    assert record["interrupted"] is True and "checkpoint_epoch" not in record


@pytest.mark.parametrize("corrupt", ["noise", "clutter"])
def test_zero_epochs_scores_the_corrupted_test_set(corrupt):
    """With no training the final accuracy follows the rule of every epoch: corrupted test set, and clean."""
    net, ds, history = mftrain.train_model("spoerer-BT", limit=30, epochs=0, steps=2, features=4, size=8,
                                           corrupt=corrupt, seed=3, progress=False, log=None)
    x, y = mftrain.corrupted(ds, ds.x_test, ds.y_test, corrupt, np.random.default_rng(4))
    assert history["final"]["test_accuracy"] == mftrain.evaluate(net, x, y, 2)
    assert history["final"]["clean_accuracy"] == mftrain.evaluate(net, ds.x_test, ds.y_test, 2)


def test_curves_without_epochs_warn_of_no_empty_legend(tmp_path):
    pytest.importorskip("matplotlib")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mftrain.plot_curves({"epochs": []}, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(model_name="nope"), "unknown model"),
    (dict(data="imagenet"), "unknown data spec"),
    (dict(epochs=-1), "epochs"),
    (dict(optimizer="rmsprop"), "optimizer"),
    (dict(corrupt="rain"), "corruption"),
    (dict(lr=0.0), r"make_optimizer: lr must be a finite number > 0, got 0\.0"),
    (dict(size=1), "size"),
    (dict(steps=2, truncate=3), "truncate must be at most steps"),
    (dict(model_name="lenet5", features=8), "features"),
])
def test_bad_arguments_raise_value_errors(kwargs, match):
    args = dict(limit=8, epochs=1, progress=False, log=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mftrain.train(**args)


@pytest.mark.parametrize("kwargs, message", [
    (dict(weight_decay=-1.0), r"Adam: weight_decay must be a finite number >= 0, got -1\.0"),
    (dict(weight_decay=float("nan")), r"Adam: weight_decay must be a finite number >= 0, got nan"),
    (dict(lr=-1.0), r"make_optimizer: lr must be a finite number > 0, got -1\.0"),
    (dict(clip=float("inf")), r"train: clip must be a finite number > 0, got inf"),
    (dict(clip=True), r"train: clip must be a number, got True"),
    (dict(seed=-1), r"train: seed must be an integer >= 0, got -1"),
])
def test_a_bad_optimiser_argument_fails_before_an_earlier_run_is_removed(tmp_path, kwargs, message):
    out = tmp_path / "run"
    mftrain.train("spoerer-BT", limit=20, epochs=1, steps=2, features=4, size=8, out=str(out),
                  progress=False, log=None, plot=False)
    before = sorted(p.name for p in out.iterdir())
    assert {"model.npz", "metrics.json"} <= set(before)
    with pytest.raises((ValueError, TypeError), match=message):   # TypeError: not a number at all
        mftrain.train("spoerer-BT", limit=20, epochs=1, steps=2, features=4, size=8, out=str(out),
                      progress=False, log=None, plot=False, **kwargs)
    assert sorted(p.name for p in out.iterdir()) == before


def _lstm_chain(seed=0):
    """A chain whose only state is an nn.LSTM inside it (no Splitters, so its feedback state is empty)."""
    mf.manual_seed(seed)
    return mf.nn.FeedbackChain(mf.nn.Flatten(), mf.nn.LSTM(64, 5), mf.nn.Dense(5, 10))


def test_a_recur_inside_the_model_is_unrolled_and_reset_for_every_batch():
    net = _lstm_chain()
    x, y = batch(6)
    loss, logits = mftrain.sequence_loss(net, x, y, steps=3)
    # by hand: the LSTM from its zero state, three real steps
    lstm = net.layers[1]
    lstm.reset()
    flat = mf.tensor(x).reshape(6, 64)
    want = [net.layers[2](lstm(flat)) for _ in range(3)]
    for got, w in zip(logits, want):
        np.testing.assert_allclose(got.numpy(), w.numpy(), rtol=1e-6)
    assert not np.allclose(logits[0].numpy(), logits[1].numpy())     # really three different steps
    # two batches in a row, the second smaller: each starts from zero state, and backward works
    opt = mftrain.make_optimizer("adam", net.parameters(), 1e-3)
    mftrain.train_step(net, opt, x, y, steps=3)
    mftrain.train_step(net, opt, x[:4], y[:4], steps=3, truncate=1)
    accs = [mftrain.evaluate(net, x, y, steps=3, batch=b) for b in (6, 4, 6)]
    assert accs[0] == accs[1] == accs[2]                               # no state leaks between batches


def test_the_protocol_takes_data_on_the_model_device(device):
    """Tensors (and, on a GPU, CuPy arrays) on the model's device: no np.asarray of device data."""
    net = tiny("BT").to(device)
    x, y = batch(4)
    xt, yt = mf.tensor(x, device=device), mf.tensor(y, device=device)
    opt = mftrain.make_optimizer("sgd", net.parameters(), 1e-2)
    loss, logits = mftrain.train_step(net, opt, xt, yt, steps=2)
    assert np.isfinite(loss) and logits[-1].device == device
    assert mftrain.accuracy(logits[-1], yt) == mftrain.accuracy(logits[-1].numpy(), y)
    accs = mftrain.evaluate(net, xt, yt, steps=2)
    assert accs == mftrain.evaluate(net, x, y, steps=2)


# ---------------------------------------------------------------- bad inputs: a clear error, never a silent cast


@pytest.mark.parametrize("labels", [np.array([0.5, 1.7, 2.2, 3.9], np.float32), np.array([0.0, 1.0, 2.0, 3.0]),
                                    np.array([True, False, True, False])])
def test_the_protocol_refuses_labels_that_are_not_integers(labels):
    """Float labels were cast with astype(int64): [0.5, 1.7, ...] gave the loss of [0, 1, ...]."""
    net = tiny("B")
    x, _ = batch(4)
    dtype = str(labels.dtype)
    with pytest.raises(TypeError, match=rf"sequence_loss: labels y must be integers .*got dtype {dtype}"):
        mftrain.sequence_loss(net, x, labels, steps=2)
    with pytest.raises(TypeError, match=rf"train_step: labels y must be integers .*got dtype {dtype}"):
        mftrain.train_step(net, NoStep(net.parameters()), x, labels, steps=2)
    tensor_labels = mf.tensor(labels)   # a Tensor too (float64 becomes the default float32)
    with pytest.raises(TypeError, match=rf"sequence_loss: .*got dtype {np.dtype(tensor_labels.dtype)}"):
        mftrain.sequence_loss(net, x, tensor_labels, steps=2)


def test_fit_refuses_a_dataset_with_float_labels():
    ds = mftrain.prepare_data("digits", size=8, limit=8)
    ds.y_train = ds.y_train.astype(np.float32) + 0.5
    with pytest.raises(TypeError, match=r"fit: ds.y_train must be integers .*got dtype float32"):
        mftrain.fit(tiny("B"), ds, epochs=1, steps=1, progress=False, log=None)


def test_train_step_refuses_something_that_is_not_an_optimiser():
    net = tiny("B")
    x, y = batch(4)
    for bad in (None, "adam", net):
        with pytest.raises(TypeError, match=r"train_step: opt must be an optimiser with zero_grad\(\) and step\(\)"):
            mftrain.train_step(net, bad, x, y, steps=1)


@pytest.mark.parametrize("labels, shape", [
    (np.array([3]), r"\(1,\)"),                    # was broadcast over all 4 logits
    (np.array([3, 3, 3]), r"\(3,\)"),              # was NumPy's broadcast error
    (np.array([[5]] * 4), r"\(4, 1\)"),            # int (N, 1) was read as multi-hot
    (np.zeros((4, 3)), r"\(4, 3\)"),               # multi-hot with the wrong class count
    (np.zeros((4, 10, 1)), r"\(4, 10, 1\)"),
    (np.array(3), r"\(\)"),
])
def test_accuracy_refuses_labels_whose_shape_does_not_fit_the_logits(labels, shape):
    logits = mf.tensor(np.eye(10, dtype=np.float32)[[3, 3, 3, 1]])
    with pytest.raises(ValueError, match=rf"accuracy: logits of shape \(4, 10\) need labels of shape "
                                         rf"\(4,\) or \(4, 10\), got {shape}"):
        mftrain.accuracy(logits, labels)


def test_accuracy_refuses_1d_logits_and_float_class_indices():
    with pytest.raises(ValueError, match=r"accuracy: logits must have shape \(N, classes\), got \(10,\)"):
        mftrain.accuracy(np.zeros(10), np.array([3]))
    with pytest.raises(TypeError, match=r"accuracy: labels y of shape \(2,\) must be integer class indices, "
                                        r"got dtype float64"):
        mftrain.accuracy(np.eye(2), np.array([0.0, 1.0]))
    assert np.isnan(mftrain.accuracy(np.zeros((0, 10)), np.zeros(0, np.int64)))   # an empty batch: still nan


def test_build_model_refuses_fractional_sizes():
    for kwargs in (dict(size=8.5), dict(size=8, classes=2.5), dict(size=8, channels=True)):
        with pytest.raises(ValueError, match=r"build_model: \w+ must be a positive integer"):
            mftrain.build_model("spoerer-B", **kwargs)


def test_numpy_integer_arguments_and_a_diverged_loss_are_written_as_strict_json(tmp_path):
    out = tmp_path / "run"
    mftrain.train("spoerer-BT", limit=np.int64(20), epochs=np.int64(1), steps=np.int64(2), seed=np.int64(0),
                  features=4, size=8, out=str(out), progress=False, log=None, plot=False)
    text = (out / "metrics.json").read_text()
    assert json.loads(text)["config"]["epochs"] == 1
    history = {"config": {"lr": np.float32(0.5)}, "epochs": [{"loss": float("nan")}, {"loss": np.float64(np.inf)}]}
    mftrain.save_metrics(history, tmp_path / "m.json")
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"config": {"lr": 0.5}, "epochs": [{"loss": None}, {"loss": None}]}


def test_train_step_and_fit_check_clip_and_seed_and_name_themselves():
    net = tiny("BT")
    opt = mftrain.make_optimizer("sgd", net.parameters(), 0.1)
    x, y = batch(4)
    with pytest.raises(ValueError, match=r"^train_step: clip must be a finite number > 0, got 0"):
        mftrain.train_step(net, opt, x, y, steps=2, clip=0)
    ds = mftrain.prepare_data("digits", size=8, limit=8)
    with pytest.raises(ValueError, match=r"^fit: seed must be an integer >= 0, got -1"):
        mftrain.fit(net, ds, seed=-1, epochs=1, progress=False, log=None)
    with pytest.raises(ValueError, match=r"^fit: steps must be a positive integer, got 0"):
        mftrain.fit(net, ds, steps=0, epochs=1, progress=False, log=None)
    assert mftrain.make_optimizer("adam", net.parameters(), np.float32(1e-3)).lr == pytest.approx(1e-3)


def test_accuracy_refuses_class_indices_outside_the_logits_and_evaluate_names_itself():
    logits = np.eye(3, dtype=np.float32)
    assert mftrain.accuracy(logits, np.array([0, 1, 2])) == 1.0
    for bad in ([0, 1, 3], [-1, 1, 2]):
        with pytest.raises(ValueError, match=r"^accuracy: class indices must be in 0\.\.2 for 3 logits"):
            mftrain.accuracy(logits, np.array(bad))
    net = tiny("BT")
    x, _ = batch(4)
    with pytest.raises(TypeError, match=r"^evaluate: labels y must be integers"):
        mftrain.evaluate(net, x, np.zeros(4), steps=2)
    empty = mftrain.evaluate(net, x[:0], np.zeros(0, np.int64), steps=2)
    assert len(empty) == 2 and all(np.isnan(a) for a in empty)   # as accuracy() of an empty batch


def test_a_stateless_model_with_dropout_draws_a_mask_per_timestep():
    mf.manual_seed(0)
    net = mf.nn.Chain(mf.nn.Flatten(), mf.nn.Dropout(0.5), mf.nn.Dense(64, 10))
    x, y = batch(4)
    _, logits = mftrain.sequence_loss(net, x, y, steps=3)
    assert not np.array_equal(logits[0].numpy(), logits[1].numpy())   # not one mask reused for all steps
    net.eval()
    _, logits = mftrain.sequence_loss(net, x, y, steps=3)
    assert logits[0] is logits[1]                                       # deterministic: computed once


# ---------------------------------------------------------------- found by mutation testing (session 13)
def _fit_with_recorded_steps(monkeypatch, **kwargs):
    """fit() on 16 digits in batches of 5 (5, 5, 5, 1), with train_step replaced by a recorder whose loss is
    the batch's mean label and whose logits are wrong at every timestep but the last."""
    calls = []

    def fake_step(net, opt, xb, yb, steps=4, truncate=None, clip=None):
        calls.append(dict(lr=opt.lr, clip=clip, truncate=truncate, y=np.asarray(yb).copy()))
        right, wrong = np.eye(10, dtype=np.float32)[yb], np.eye(10, dtype=np.float32)[(yb + 1) % 10]
        return float(np.mean(yb)), [mf.tensor(wrong)] * (steps - 1) + [mf.tensor(right)]

    monkeypatch.setattr(mftrain, "train_step", fake_step)
    ds = mftrain.prepare_data("digits", size=8, limit=16)
    args = dict(steps=3, epochs=2, batch=5, lr=0.1, progress=False, log=None)
    args.update(kwargs)
    return ds, mftrain.fit(tiny("B"), ds, **args), calls


def test_fit_records_the_last_timesteps_train_accuracy_and_the_per_example_loss(monkeypatch):  # kills T1, T10
    ds, history, _ = _fit_with_recorded_steps(monkeypatch)
    for record in history["epochs"]:
        assert record["train_accuracy"] == 1.0                               # logits[-1], not logits[0]
        assert record["loss"] == pytest.approx(ds.y_train.mean())            # weighted by batch size


def test_fit_decays_the_learning_rate_on_a_cosine_and_records_it(monkeypatch):    # kills T2, T3
    _, history, calls = _fit_with_recorded_steps(monkeypatch, lr=0.1)
    total = len(calls)                                                       # 2 epochs x 4 batches
    want = [0.1 * (0.05 + 0.475 * (1 + math.cos(math.pi * b / total))) for b in range(total)]
    assert [c["lr"] for c in calls] == pytest.approx(want)
    assert [r["lr"] for r in history["epochs"]] == pytest.approx([want[3], want[7]])


def test_fit_passes_clip_and_truncate_to_every_step(monkeypatch):            # kills T4
    _, _, calls = _fit_with_recorded_steps(monkeypatch, clip=0.25, truncate=2)
    assert [(c["clip"], c["truncate"]) for c in calls] == [(0.25, 2)] * 8


def test_fit_shuffles_with_its_seed(monkeypatch):                           # kills T7
    orders = [[c["y"].tolist() for c in _fit_with_recorded_steps(monkeypatch, seed=seed)[2]] for seed in (7, 7, 8)]
    assert orders[0] == orders[1] and orders[0] != orders[2]


def test_make_optimizer_builds_the_documented_optimisers():                  # kills T5, T6
    net = tiny("B")
    sgd = mftrain.make_optimizer("sgd", net.parameters(), 0.1)
    assert type(sgd) is mf.optim.SGD and sgd.momentum == 0.9
    adam = mftrain.make_optimizer("Adam", net.parameters(), 1e-3, weight_decay=0.5)
    assert type(adam) is mf.optim.Adam and adam.weight_decay == 0.5
    assert mftrain.make_optimizer("adamw", net.parameters(), 1e-3).weight_decay == 0.01   # 0 means AdamW's 0.01
    assert mftrain.make_optimizer("adamw", net.parameters(), 1e-3, weight_decay=1e-4).weight_decay == 1e-4


def test_train_seeds_the_initial_weights():                                 # kills T8
    nets = [mftrain.train_model("spoerer-BT", limit=8, epochs=0, steps=1, features=4, size=8, seed=5,
                                progress=False, log=None)[0] for _ in range(2)]
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_multilabel_accuracy_looks_at_the_top_k_logits_only():              # kills T12
    scores = np.full((1, 10), -1.0)
    scores[0, [3, 1, 7]] = [5.0, 4.0, 3.0]       # k = 2 labels {3, 7}: top 2 is {3, 1}, one hit
    labels = np.zeros((1, 10))
    labels[0, [3, 7]] = 1
    assert mftrain.accuracy(scores, labels) == 0.5


# ---------------------------------------------------------------- found by the user audit (session 14)
def test_train_step_updates_batchnorm_statistics_at_every_timestep():
    """A stateless model with a BatchNorm in training mode is not run once for all timesteps: its running
    statistics move ``steps`` times, as when the steps are unrolled by hand."""
    def make():
        mf.manual_seed(0)
        return mf.nn.Chain(mf.nn.Conv(1, 3, 3, padding=1), mf.nn.BatchNorm(3), mf.nn.Flatten(),
                           mf.nn.Dense(3 * 8 * 8, 10))

    x, y = batch(8)
    x = x * 3 + 2
    net = make()
    loss, _ = mftrain.train_step(net, mf.optim.SGD(net.parameters(), 0.0), x, y, steps=4)
    by_hand = make()
    want = sum(F.cross_entropy(by_hand(mf.tensor(x)), y) for _ in range(4))
    assert loss == pytest.approx(float(want.data), rel=1e-6)
    for (name, got), (_, ref) in zip(net.named_buffers(), by_hand.named_buffers()):
        np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-6, err_msg=name)
    assert int(net.layers[1].num_batches_tracked.numpy()) == 4


def test_train_records_the_weight_decay_that_adamw_uses(tmp_path):
    history = mftrain.train("spoerer-B", optimizer="adamw", weight_decay=0.0, epochs=0, limit=8, size=8,
                            features=4, steps=1, out=str(tmp_path), progress=False, log=None, plot=False)
    assert history["config"]["weight_decay"] == 0.01                   # what make_optimizer gave AdamW
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["weight_decay"] == 0.01


def test_train_refuses_a_bad_kernel_mode_before_removing_an_earlier_runs_files(tmp_path, monkeypatch):
    (tmp_path / "model.npz").write_bytes(b"an earlier run's weights")
    monkeypatch.setenv("MINIFB_KERNELS", "bogus")
    with pytest.raises(ValueError, match=r"^MINIFB_KERNELS='bogus': expected one of off, emulate, cuda, auto$"):
        mftrain.train("spoerer-BT", epochs=1, limit=8, size=8, features=4, out=str(tmp_path), progress=False,
                      log=None)
    assert (tmp_path / "model.npz").read_bytes() == b"an earlier run's weights"


# ---------------------------------------------------------------- found by the fuzz audit (session 14b)
def test_default_size_refuses_what_is_not_a_model_name():
    assert mftrain.default_size("lenet5_fb") == 28 and mftrain.default_size("spoerer-B") == 16
    for bad in (None, "nope", 2.5, "lenet", ["lenet5"]):
        with pytest.raises(ValueError, match=rf"^default_size: unknown model {bad!r}: expected one of lenet5, "
                                             .replace("[", r"\[").replace("]", r"\]")):
            mftrain.default_size(bad)


def test_count_parameters_and_fit_refuse_what_is_not_a_model_or_a_dataset():
    net = tiny("B")
    ds = mftrain.prepare_data("digits", size=8, limit=8)
    with pytest.raises(TypeError, match=r"^count_parameters: net must be a model with parameters\(\) .*got NoneType"):
        mftrain.count_parameters(None)
    for bad in (None, {"x_train": ds.x_train}):
        with pytest.raises(TypeError, match=rf"^fit: ds must be a minifb.data.Dataset .*got {type(bad).__name__}$"):
            mftrain.fit(net, bad, epochs=1, progress=False, log=None)
    with pytest.raises(TypeError, match=r"^fit: net must be a model with parameters\(\) .*got list$"):
        mftrain.fit(list(net.parameters()), ds, epochs=1, progress=False, log=None)


@pytest.mark.parametrize("history", [None, "x", float("nan"), [1.0]], ids=["none", "str", "nan", "list"])
def test_save_metrics_refuses_what_is_not_a_history_dict(tmp_path, history):
    path = tmp_path / "m.json"
    with pytest.raises(TypeError, match=rf"^save_metrics: history must be a dict .*got {type(history).__name__}$"):
        mftrain.save_metrics(history, path)
    assert os.listdir(tmp_path) == []                                     # nothing written


def test_save_metrics_writes_arrays_as_lists_and_nothing_when_a_value_cannot_be_written(tmp_path):
    path = tmp_path / "m.json"
    mftrain.save_metrics({"final": {"test_accuracy": np.array([0.5, np.nan])}}, path)
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c)) == {
        "final": {"test_accuracy": [0.5, None]}}
    with pytest.raises(TypeError, match="not JSON serializable"):
        mftrain.save_metrics({"net": object()}, tmp_path / "other.json")
    assert sorted(os.listdir(tmp_path)) == ["m.json"]                      # no stray .tmp file


class _OneTensorCell(mf.nn.Module):
    """``state, logits = cell(state, x)`` with one Tensor as its state (the RNNCell/GRUCell convention)."""

    def __init__(self, width):
        self.inp, self.rec, self.width = mf.nn.Dense(64, width), mf.nn.Dense(width, width), width
        self.head = mf.nn.Dense(width, 3)

    def initial_state(self, x):
        return mf.zeros(x.shape[0], self.width)

    def forward(self, h, x):
        h = mf.tanh(self.inp(F.flatten(x)) + self.rec(h))
        return h, self.head(h)


@pytest.mark.parametrize("batch, width", [(2, 10), (1, 1)], ids=["several elements", "one zero element"])
def test_sequence_loss_carries_a_single_tensor_state(batch, width):
    # bool(state) either raised (several elements) or read a one-element zero state as "no state" and ran once
    mf.manual_seed(0)
    cell = _OneTensorCell(width)
    x = np.random.default_rng(0).random((batch, 1, 8, 8)).astype(np.float32)
    y = np.zeros(batch, np.int64)
    loss, _ = mftrain.sequence_loss(cell, x, y, steps=3)
    h, want = cell.initial_state(mf.tensor(x)), 0.0
    for _ in range(3):
        h, logits = cell(h, mf.tensor(x))
        want += F.cross_entropy(logits, mf.tensor(y)).item()
    assert loss.item() == pytest.approx(want, rel=1e-6)


def test_save_metrics_leaves_a_users_file_named_like_its_old_temporary_alone(tmp_path):
    # the temporary was path + ".tmp", overwritten and renamed away, as mf.save's was
    path = tmp_path / "metrics.json"
    (tmp_path / "metrics.json.tmp").write_text("my notes")
    mftrain.save_metrics({"epochs": []}, path)
    assert (tmp_path / "metrics.json.tmp").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "metrics.json.tmp"]
    assert json.loads(path.read_text()) == {"epochs": []}
    with pytest.raises(FileNotFoundError, match=r"save_metrics: the folder .*nowhere.* does not exist"):
        mftrain.save_metrics({}, tmp_path / "nowhere" / "metrics.json")
