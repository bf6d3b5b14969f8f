"""The README's Python examples run as written (the seed example among them)."""

import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_seed_example_first():
    assert BLOCKS and 'nn.Merger("fork1", nn.Dense(5, 10, mf.relu), operator.add)' in BLOCKS[0]


def _check_seed_example(ns):
    """One FeedbackChain step by hand, then one through Recur: a (5,) ReLU output and a "fork1" state that
    the Splitter filled with that step's output."""
    out, h, state = ns["out"], ns["h"], ns["rnet"].state
    assert out.shape == (5,) and (out.numpy() >= 0).all()
    assert set(h) == {"fork1"} and h["fork1"].shape == (5,)
    assert set(state) == {"fork1"} and state["fork1"].shape == (5,)
    np.testing.assert_array_equal(state["fork1"].numpy(), out.numpy())


def _check_training_example(ns, before):
    """Four timesteps of a conv net with top-down feedback, one Adam step: a finite positive loss, a
    gradient for every parameter, and every parameter moved by the step."""
    from minifb import backend

    loss, net = ns["loss"], ns["net"]
    assert loss.shape == () and np.isfinite(loss.item()) and loss.item() > 0
    assert set(ns["rnet"].state) == {"top"}
    params = dict(net.named_parameters())
    assert params.keys() == before.keys() and params
    for name, p in params.items():
        assert p.grad is not None and np.isfinite(backend.to_numpy(p.grad)).all(), name
        assert not np.array_equal(backend.to_numpy(p.data), before[name]), f"{name} unchanged by opt.step()"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    """Each block runs as written, and what it computes is checked.  The training block is run in two parts,
    split before ``opt.step()``, so that the parameters can be compared before and after the step."""
    from minifb import backend

    block, namespace = BLOCKS[index], {}

    def run(code):
        exec(compile(code, f"README.md python block {index}", "exec"), namespace)

    if 'nn.Splitter("fork1")' in block and "nn.Recur(net, h)" in block:
        run(block)
        _check_seed_example(namespace)
    elif "\nopt.step()" in block:
        head, step, tail = block.partition("\nopt.step()")
        run(head)
        before = {k: backend.to_numpy(p.data).copy() for k, p in namespace["net"].named_parameters()}
        run("\n" * head.count("\n") + step + tail)           # line numbers in tracebacks stay right
        _check_training_example(namespace, before)
    else:
        run(block)
        pytest.fail(f"README python block {index} ran, but this test has no check of what it computes: add one")


TEXT = README.read_text()
CI = (README.parent / ".ci" / "run").read_text()
SETUP = re.search(r"## Set-up.*?```bash\n(.*?)```", TEXT, flags=re.S).group(1).strip().splitlines()


def test_setup_is_two_commands_and_ci_runs_the_test_command():
    """``.ci/run`` installs as the set-up does and runs the README's test command; the README says what else."""
    assert len(SETUP) == 2
    install, test_command = SETUP
    assert '-e ".[dev,train]"' in install and '-e ".[dev,train]"' in CI
    assert re.search(rf"^{re.escape(test_command)}$", CI, flags=re.M), test_command
    assert "exactly these two steps" not in TEXT
    if "MINIFB_KERNELS_ASAN" in CI:
        assert "AddressSanitizer" in TEXT
    if "torch" in CI:
        assert "PyTorch" in TEXT


def test_every_model_name_the_readme_lists_is_accepted():
    from minifb import __main__ as cli, models

    listed = re.search(r"`--model ([^`]+)`", TEXT).group(1).split("|")
    assert sorted(listed) == sorted(models.MODEL_NAMES)
    parser = cli.build_parser()
    for name in listed + re.findall(r"`--model (\w+)`", TEXT):
        assert parser.parse_args(["train", "--model", name]).model in models.MODEL_NAMES


def test_other_training_commands_do_not_overwrite_the_setup_run():
    """Only the set-up's ``minifb train`` writes runs/spoerer-BLT; every other shown one names its own --out."""
    commands = [line for block in re.findall(r"```bash\n(.*?)```", TEXT, flags=re.S) for line in block.splitlines()
                if "minifb train" in line and line not in SETUP]
    assert commands
    for line in commands:
        out = re.search(r"--out (\S+)", line)
        assert out and out.group(1).rstrip("/") != "runs/spoerer-BLT", line
