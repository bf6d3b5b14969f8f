"""Tests of the ``minifb`` command line, driven in-process through ``main([...])`` on tiny budgets."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minifb as mf
from minifb import __main__ as cli
from minifb import train as mftrain

HAS_MPL = importlib.util.find_spec("matplotlib") is not None
TINY = ["--limit", "40", "--epochs", "1", "--steps", "2", "--features", "4", "--size", "8", "--no-progress"]


def run(capsys, *argv):
    """``main(argv)`` -> (exit code, stdout, stderr)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the tests that read its outputs."""
    out = tmp_path_factory.mktemp("run")
    code = cli.main(["train", "--model", "spoerer-BT", "--out", str(out), *TINY])
    assert code == 0
    return out


def test_train_writes_model_metrics_and_curves(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["config"]["model_name"] == "spoerer-BT"
    assert metrics["config"]["steps"] == 2 and metrics["config"]["size"] == 8
    assert len(metrics["epochs"]) == 1
    record = metrics["epochs"][0]
    for key in ("loss", "test_accuracy", "train_accuracy", "seconds"):
        assert key in record
    assert len(record["test_accuracy"]) == 2
    assert np.isfinite(record["loss"]) and record["seconds"] > 0
    net = mftrain.build_model("spoerer-BT", 8, features=4)
    mf.load(net, str(trained / "model.npz"))
    assert (trained / "curves.png").exists() == HAS_MPL


def test_train_prints_accuracy_per_timestep(tmp_path, capsys):
    code, out, err = run(capsys, "train", "--model", "spoerer-B", "--out", str(tmp_path), "--corrupt", "noise",
                         *TINY)
    assert code == 0, err
    assert "epoch 1/1" in out and "t1=" in out and "t2=" in out
    assert "clean test accuracy" in out


def test_evaluate_reads_the_run_config(trained, capsys):
    code, out, err = run(capsys, "evaluate", "--weights", str(trained / "model.npz"), "--limit", "30",
                         "--corrupt", "debris")
    assert code == 0, err
    assert "spoerer-BT" in out and "debris" in out
    assert "t=1" in out and "t=2" in out and "t=3" not in out


def test_evaluate_rejects_weights_of_another_model(trained, capsys):
    code, _, err = run(capsys, "evaluate", "--weights", str(trained / "model.npz"), "--model", "spoerer-BLT",
                       "--limit", "10")
    assert code == 2
    assert err.startswith("minifb: error:") and "does not fit" in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "resnet"], "unknown model 'resnet'"),
    (["train", "--data", "cifar"], "unknown data spec"),
    (["train", "--data", "mnist:/no/such/dir"], "not found"),
    (["train", "--epochs", "-1"], "--epochs"),
    (["train", "--steps", "0"], "--steps"),
    (["train", "--lr", "abc"], "--lr"),
    (["train", "--optimizer", "rmsprop"], "unknown optimizer"),
    (["train", "--corrupt", "rain"], "unknown corruption"),
    (["evaluate", "--weights", "/no/such/model.npz"], "not found"),
    (["train", "--seed", "-1"], "argument --seed: must be at least 0"),
    (["evaluate", "--weights", "/no/such/model.npz", "--seed", "-1"], "argument --seed: must be at least 0"),
    (["compare", "--seed", "-1"], "argument --seed: must be at least 0"),
    (["train", "--steps", "2", "--truncate", "3"], "argument --truncate: must be at most --steps (2), got 3"),
    (["show", "nonet"], "unknown model"),
    (["frobnicate"], "invalid choice"),
    ([], "required: COMMAND (see minifb --help)"),
    (["train", "--clip", "inf"], "argument --clip: must be a positive finite number, got inf"),
    (["train", "--weight-decay", "-1"], "argument --weight-decay: must be a finite number >= 0, got -1"),
    (["train", "--size", "1000"], "argument --size: must be at most 256, got 1000"),
    (["evaluate", "--weights", "x", "--size", "1000"], "argument --size: must be at most 256, got 1000"),
    (["show", "lenet5", "--size", "100000"], "argument --size: must be at most 256, got 100000"),
])
def test_bad_arguments_give_one_line_and_exit_2(argv, message, capsys, tmp_path):
    if argv and argv[0] == "train":  # in case an argument is wrongly accepted: keep the run tiny
        argv = argv + ["--out", str(tmp_path), "--limit", "8", "--no-progress"]
        if "--epochs" not in argv:
            argv += ["--epochs", "0"]
    code, _, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("minifb: error:")
    assert message in lines[0]
    assert "Traceback" not in err


def test_interrupted_training_exits_130(monkeypatch, capsys, tmp_path):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mftrain, "train", interrupted)
    code, _, err = run(capsys, "train", "--out", str(tmp_path), *TINY)
    assert code == 130
    assert "interrupted" in err and "no checkpoint" in err


def test_interrupt_before_a_checkpoint_does_not_claim_an_earlier_runs(trained, monkeypatch, capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("model.npz", "metrics.json"):          # an earlier run's outputs in the same --out folder
        (out / name).write_bytes((trained / name).read_bytes())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mftrain, "train_step", interrupted)
    code, _, err = run(capsys, "train", "--out", str(out), *TINY)
    assert code == 130
    assert "no checkpoint was written" in err and not (out / "model.npz").exists()
    assert json.loads((out / "metrics.json").read_text())["interrupted"] is True


@pytest.mark.parametrize("level", ["nan", "inf", "-1"])
def test_evaluate_rejects_a_noise_level_that_is_not_a_finite_std(trained, capsys, level):
    code, _, err = run(capsys, "evaluate", "--weights", str(trained / "model.npz"), "--corrupt", "noise",
                       "--level", level, "--limit", "10")
    assert code == 2 and err.strip().splitlines() == [
        f"minifb: error: add_noise: std must be a finite number >= 0, got {float(level)!r}"]


@pytest.mark.parametrize("text", ["[1, 2]", "not json", '{"config": 3}'])
def test_evaluate_rejects_metrics_that_are_not_a_run_record(trained, capsys, tmp_path, text):
    (tmp_path / "model.npz").write_bytes((trained / "model.npz").read_bytes())
    (tmp_path / "metrics.json").write_text(text)
    code, _, err = run(capsys, "evaluate", "--weights", str(tmp_path / "model.npz"), "--limit", "10")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"minifb: error: {tmp_path / 'metrics.json'} is not a minifb metrics file")


def test_show_draws_feedback_from_splitter_to_merger(capsys, tmp_path):
    dot = tmp_path / "net.dot"
    code, out, err = run(capsys, "show", "spoerer-BLT", "--dot", str(dot))
    assert code == 0, err
    assert 'Splitter("l1")' in out and 'Merger("l1"' in out
    assert 'Splitter("l2")' in out and 'Merger("l2"' in out
    assert "3 feedback path(s)" in out
    text = dot.read_text()
    assert text.startswith("digraph") and text.rstrip().endswith("}")
    assert text.count("style=dashed") == 3


def test_show_lenet5_fb_and_a_feedforward_model(capsys):
    code, out, _ = run(capsys, "show", "lenet5_fb")
    assert code == 0
    assert 'Splitter("conv2")' in out and 'Merger("fc1"' in out and "2 feedback path(s)" in out
    # the path's vertical line runs from the Merger's row down to the Splitter's row
    lines = out.splitlines()
    top = next(i for i, line in enumerate(lines) if 'Merger("conv2"' in line)
    bottom = next(i for i, line in enumerate(lines) if 'Splitter("conv2")' in line)
    assert lines[top].lstrip().startswith("+") and lines[bottom].startswith("+")
    assert all(line.startswith("|") for line in lines[top + 1:bottom])
    code, out, _ = run(capsys, "show", "spoerer-B")
    assert code == 0 and "no feedback paths" in out


def test_compare_writes_its_table(tmp_path, capsys):
    code, out, err = run(capsys, "compare", "--models", "spoerer-B,spoerer-BT", "--out", str(tmp_path),
                         "--limit", "30", "--epochs", "1", "--steps", "2", "--features", "4", "--size", "8",
                         "--no-progress")
    assert code == 0, err
    table = (tmp_path / "compare.md").read_text()
    assert "| model | feedback | parameters | clean | noise" in table
    assert "| spoerer-B | no (control) |" in table and "| spoerer-BT | yes |" in table
    assert table.splitlines()[0] in out
    assert (tmp_path / "compare.png").exists() == HAS_MPL
    rows = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["spoerer-B", "spoerer-BT"]
    assert all(len(r["debris"]) == 2 for r in rows)


def test_compare_rejects_an_unknown_model(capsys):
    code, _, err = run(capsys, "compare", "--models", "spoerer-B,vgg")
    assert code == 2 and "unknown model 'vgg'" in err


def test_python_dash_m_runs():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "minifb", "show", "spoerer-BT"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'Splitter("l2")' in done.stdout
    bad = subprocess.run([sys.executable, "-m", "minifb", "train", "--epochs", "-3"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_short_spoerer_names_are_accepted(capsys):
    """``--model BLT`` is short for ``spoerer-BLT`` (and the default output folder uses the full name)."""
    parser = cli.build_parser()
    assert parser.parse_args(["train", "--model", "BLT"]).model == "spoerer-BLT"
    assert parser.parse_args(["compare", "--models", "B,spoerer-BT"]).models == ["spoerer-B", "spoerer-BT"]
    code, out, _ = run(capsys, "show", "BT")
    assert code == 0 and out.startswith("spoerer-BT for 1x16x16 images")
    code, _, err = run(capsys, "show", "blt-x")
    assert code == 2 and "unknown model 'blt-x'" in err


def test_model_names_take_any_letter_case_as_the_other_choices_do():
    parser = cli.build_parser()
    assert parser.parse_args(["train", "--model", "blt"]).model == "spoerer-BLT"
    assert parser.parse_args(["train", "--model", "Spoerer-bl"]).model == "spoerer-BL"
    assert parser.parse_args(["train", "--model", "LeNet5_FB"]).model == "lenet5_fb"
    assert parser.parse_args(["compare", "--models", "b, bt"]).models == ["spoerer-B", "spoerer-BT"]


def test_compare_gives_features_to_the_spoerer_models_only(tmp_path, capsys):
    code, out, err = run(capsys, "compare", "--models", "B,lenet5", "--features", "2", "--size", "8",
                         "--limit", "20", "--epochs", "1", "--steps", "2", "--no-progress")
    assert code == 0, err
    assert "| spoerer-B |" in out and "| lenet5 |" in out


def test_compare_refuses_an_output_path_that_is_a_file_before_training(tmp_path, capsys, monkeypatch):
    trained = []
    monkeypatch.setattr(mftrain, "train_model", lambda **kw: trained.append(kw) or (_ for _ in ()).throw(
        AssertionError("trained")))
    target = tmp_path / "taken"
    target.write_text("")
    code, _, err = run(capsys, "compare", "--models", "B,BT", "--out", str(target), *TINY)
    assert code == 2 and "taken" in err and trained == []


def test_evaluate_refuses_a_level_without_a_corruption_and_takes_a_run_folder(trained, capsys):
    code, out, err = run(capsys, "evaluate", "--weights", str(trained / "model.npz"), "--limit", "20",
                         "--corrupt", "none", "--level", "5")
    assert code == 2 and "argument --level: applies to a corruption; give --corrupt too" in err
    code, out, err = run(capsys, "evaluate", "--weights", str(trained), "--limit", "20")   # the run's folder
    assert code == 0, err
    assert "corruption none)" in out
    code, out, err = run(capsys, "evaluate", "--weights", str(trained.parent), "--limit", "20")
    assert code == 2 and "weights file is a folder without a model.npz" in err


def test_clip_none_turns_clipping_off_and_a_diverged_run_exits_1(monkeypatch, capsys, tmp_path):
    seen = []
    real = cli.mftrain.train
    monkeypatch.setattr(cli.mftrain, "train", lambda **kw: seen.append(kw["clip"]) or real(**kw))
    for text in ("none", "off", "0"):
        code, _, err = run(capsys, "train", "--out", str(tmp_path), "--clip", text, "--limit", "8", "--epochs", "0",
                           "--no-progress")
        assert code == 0, err
    assert seen == [None, None, None]

    def diverging(**kw):   # a run whose loss overflowed in its second epoch (hard to provoke in a tiny run)
        history = real(**kw)
        history["epochs"][1]["loss"] = float("nan")
        return history

    monkeypatch.setattr(cli.mftrain, "train", diverging)
    code, out, err = run(capsys, "train", "--model", "spoerer-B", "--out", str(tmp_path), *TINY[:2], "--epochs", "2",
                         *TINY[4:])
    assert code == 1 and "wrote " in out
    assert "minifb: error: the training loss was not finite from epoch 2 on: the run diverged" in err


def test_output_piped_into_a_reader_that_leaves_stops_quietly():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "minifb", "show", "spoerer-BLT"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()          # as `| head -0` would
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 141) and err == b""   # 0 when the output fit the pipe before it closed


@pytest.mark.parametrize("command", ["train", "evaluate", "compare"])
def test_help_gives_choices_and_defaults(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "one of cpu, cuda (default cpu)" in text
    assert "one of lenet5, lenet5_fb, spoerer-B, spoerer-BK, spoerer-BF, spoerer-BL, spoerer-BT, spoerer-BLT" in text
    assert "one of none, noise, saltpepper, debris, clutter" in text
    if command != "evaluate":
        for phrase in ("one of sgd, adam, adamw (default adam)", "passes over the training set (default 4)",
                       "images per optimiser step (default 32)", "(default 0)", "adamw (default 0.0",
                       "timesteps T per image (default 4)"):
            assert phrase in text, phrase
    if command == "train":
        assert "default spoerer-BLT" in text


def test_file_system_errors_give_one_line_and_exit_2(tmp_path, capsys):
    """A path that cannot be written (here: below a plain file) is a one-line error, not a traceback."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = run(capsys, "train", "--out", str(blocker / "run"), *TINY)
    assert code == 2 and err.strip() == f"minifb: error: {blocker / 'run'}: Not a directory"
    code, _, err = run(capsys, "show", "spoerer-BLT", "--dot", str(blocker / "net.dot"))
    assert code == 2 and err.strip().splitlines() == [f"minifb: error: {blocker / 'net.dot'}: Not a directory"]


def test_evaluate_refuses_a_file_that_is_not_weights(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a weights file\n")
    code, _, err = run(capsys, "evaluate", "--weights", str(bad), "--model", "spoerer-BT", "--limit", "10")
    assert code == 2
    assert err.strip() == f"minifb: error: load: {str(bad)!r} is not a minifb weights file " \
                          "(an .npz archive written by minifb.save)"
    assert "allow_pickle" not in err


def test_cli_docstring_examples_run():
    """pytest's --doctest-modules skips ``__main__.py``, so its examples are run here."""
    import doctest

    from minifb import models, nn

    # only the names conftest.py gives every example, not the module's own globals
    names = {"mf": mf, "nn": nn, "models": models, "np": np, "__name__": "__main__"}
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for test in finder.find(cli, "minifb.__main__", globs=names):
        runner.run(test)
    assert runner.tries > 0 and runner.failures == 0


# ---------------------------------------------------------------- found by mutation testing (session 13)
def test_size_takes_2_to_256_inclusive(capsys):                             # kills A1, A2
    parser = cli.build_parser()
    assert parser.parse_args(["train", "--size", "256"]).size == 256
    assert parser.parse_args(["evaluate", "--weights", "w", "--size", "2"]).size == 2
    code, _, err = run(capsys, "train", "--size", "1", "--epochs", "0", "--limit", "8", "--no-progress")
    assert code == 2 and err.strip().splitlines() == [
        "minifb: error: argument --size: must be at least 2, got 1 (see minifb --help)"]


def test_truncate_may_equal_steps(tmp_path, capsys):                       # kills A3
    code, _, err = run(capsys, "train", "--out", str(tmp_path), "--steps", "2", "--truncate", "2",
                       *TINY[:2], "--epochs", "0", *TINY[6:])
    assert code == 0, err
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["truncate"] == 2


def test_evaluate_takes_the_seed_of_the_run(trained, capsys, monkeypatch, tmp_path):   # kills A4
    (tmp_path / "model.npz").write_bytes((trained / "model.npz").read_bytes())
    metrics = json.loads((trained / "metrics.json").read_text())
    metrics["config"]["seed"] = 3
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    seeds, real = [], mftrain.prepare_data
    monkeypatch.setattr(mftrain, "prepare_data", lambda *a, **kw: seeds.append(kw["seed"]) or real(*a, **kw))
    code, _, err = run(capsys, "evaluate", "--weights", str(tmp_path / "model.npz"), "--limit", "10")
    assert code == 0, err
    code, _, err = run(capsys, "evaluate", "--weights", str(tmp_path / "model.npz"), "--limit", "10", "--seed", "1")
    assert code == 0, err
    assert seeds == [3, 1]


def test_evaluate_needs_weights(capsys):                                   # kills A5
    code, _, err = run(capsys, "evaluate", "--model", "spoerer-B")
    assert code == 2 and err.strip().splitlines() == [
        "minifb: error: the following arguments are required: --weights (see minifb --help)"]


def test_weight_decay_reaches_the_training_run(monkeypatch, capsys, tmp_path):   # kills A6
    seen, real = [], cli.mftrain.train
    monkeypatch.setattr(cli.mftrain, "train", lambda **kw: seen.append(kw["weight_decay"]) or real(**kw))
    code, _, err = run(capsys, "train", "--out", str(tmp_path), "--weight-decay", "0.125", "--epochs", "0",
                       "--limit", "8", "--no-progress")
    assert code == 0, err
    assert seen == [0.125]
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["weight_decay"] == 0.125


# ---------------------------------------------------------------- found by the user audit (session 14)
@pytest.mark.parametrize("argv", [["train", "--out", ".", *TINY], ["compare", "--out", ".", *TINY],
                                  ["evaluate", "--weights", "model.npz", "--limit", "8"]], ids=lambda a: a[0])
def test_a_bad_kernel_mode_gives_one_line_before_touching_the_output(argv, monkeypatch, capsys, tmp_path):
    (tmp_path / "model.npz").write_bytes(b"an earlier run's weights")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINIFB_KERNELS", "bogus")
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.strip().splitlines() == ["minifb: error: MINIFB_KERNELS='bogus': expected one of off, emulate, "
                                        "cuda, auto"]
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert (tmp_path / "model.npz").read_bytes() == b"an earlier run's weights"


def test_metrics_and_compare_record_the_weight_decay_that_adamw_uses(tmp_path, capsys):
    budget = ["--optimizer", "adamw", "--epochs", "0", "--limit", "8", "--steps", "1", "--features", "4",
              "--size", "8", "--no-progress"]
    code, _, err = run(capsys, "train", "--model", "spoerer-B", "--out", str(tmp_path / "run"), *budget)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["weight_decay"] == 0.01
    code, _, err = run(capsys, "compare", "--models", "spoerer-B", "--out", str(tmp_path / "cmp"), *budget)
    assert code == 0, err
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["config"]["weight_decay"] == 0.01


@pytest.mark.parametrize("argv, command, held", [
    (None, "train", True),       # the program itself: its process, its allocator
    (None, "show", False),       # no training, nothing to hold
    ("given", "train", False),   # main([...]) from Python: the caller's process is left as it is
])
def test_the_program_holds_freed_memory_for_training_only(argv, command, held, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli.memory, "hold_freed_memory", lambda: calls.append(1) or True)
    words = (["train", "--model", "spoerer-BT", "--out", str(tmp_path), *TINY] if command == "train"
             else ["show", "spoerer-BT", "--size", "8"])
    monkeypatch.setattr(sys, "argv", ["minifb", *words])
    assert cli.main(None if argv is None else words) == 0
    assert calls == ([1] if held else [])
