"""The README's Python examples run as written (the seed example among them)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_seed_example_first():
    assert BLOCKS and 'nn.Merger("fork1", nn.Dense(5, 10, mf.relu), operator.add)' in BLOCKS[0]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    namespace = {}
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), namespace)


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
