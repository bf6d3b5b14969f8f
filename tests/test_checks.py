"""minifb.checks: the shared argument checks (their use is tested with each function that calls them)."""

import numpy as np
import pytest

from minifb import checks


def test_integer_takes_integers_only():
    assert checks.integer("f", "n", np.int64(3)) == 3 and type(checks.integer("f", "n", np.int64(3))) is int
    assert checks.integer("f", "n", 0, minimum=0) == 0
    for bad in (True, np.bool_(True), 2.0, 2.5, "2", None, 0):
        with pytest.raises(ValueError, match=r"^f: n must be a positive integer, got "):
            checks.integer("f", "n", bad)
    with pytest.raises(ValueError, match=r"^f: n must be an integer >= 0, got -1"):
        checks.integer("f", "n", -1, minimum=0)


def test_flag_takes_bools_only():
    assert checks.flag("f", "b", np.bool_(False)) is False
    for bad in (0, 1, "no", None, []):
        with pytest.raises(TypeError, match=r"^f: b must be True or False, got "):
            checks.flag("f", "b", bad)


def test_number_checks_type_and_each_bound():
    assert checks.number("f", "x", np.float32(0.5), above=0, below=1) == 0.5
    assert checks.number("f", "x", 1, at_least=1, at_most=1) == 1.0
    for bad in (None, "1", True, np.array([1.0])):
        with pytest.raises(TypeError, match=r"^f: x must be a number, got "):
            checks.number("f", "x", bad)
    for value, bound in ((0, {"above": 0}), (-1, {"at_least": 0}), (2, {"at_most": 1}), (1, {"below": 1})):
        with pytest.raises(ValueError, match=r"^f: x must be a number [<>]=? "):
            checks.number("f", "x", value, **bound)


def test_checks_number_never_puts_a_nan_inside_a_bound():
    for bound in ("above", "at_least", "at_most", "below"):
        with pytest.raises(ValueError, match=r"^f: x must be a number .*, got nan"):
            checks.number("f", "x", float("nan"), **{bound: 0})
    assert checks.number("f", "x", 0, at_least=0) == 0.0


def test_0d_arrays_tensors_fractions_and_decimals_are_accepted():
    # what minifb's own reductions give (x.max().data is a 0-d array) must pass where a number does
    import decimal
    import fractions

    import minifb as mf

    x = mf.tensor([1.0, 3.0])
    assert checks.number("f", "x", x.max().data) == 3.0 and checks.number("f", "x", x.max()) == 3.0
    assert checks.number("f", "x", fractions.Fraction(1, 4)) == 0.25
    assert checks.number("f", "x", decimal.Decimal("0.5")) == 0.5
    assert checks.integer("f", "n", np.array(3)) == 3 and checks.integer("f", "n", mf.tensor([1, 2]).sum()) == 3
    assert checks.flag("f", "b", (x > 0).data.all()) is True
    with pytest.raises(TypeError, match=r"f: x must be a number, got \(1\+2j\)"):
        checks.number("f", "x", 1 + 2j)
    with pytest.raises(ValueError, match=r"f: n must be a positive integer, got array\(2\.\)"):
        checks.integer("f", "n", np.array(2.0))


def test_number_finite_refuses_nan_and_infinities_even_without_a_bound():
    assert checks.number("f", "x", 1e300, finite=True) == 1e300
    assert checks.number("f", "x", float("inf")) == float("inf")  # without finite, an unbounded inf passes
    for bad in (float("inf"), -float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"^f: x must be a finite number, got "):
            checks.number("f", "x", bad, finite=True)
    with pytest.raises(ValueError, match=r"^f: x must be a finite number >= 0, got inf"):
        checks.number("f", "x", float("inf"), at_least=0, finite=True)


def test_pair_takes_an_int_or_two_ints_at_least_the_minimum():
    assert checks.pair("f", "k", 3) == (3, 3)
    assert checks.pair("f", "k", [1, np.int64(2)]) == (1, 2)
    assert checks.pair("f", "k", np.array([2, 5])) == (2, 5)
    assert checks.pair("f", "p", (0, 4), minimum=0) == (0, 4)
    assert all(type(v) is int for v in checks.pair("f", "k", (np.int32(1), np.array(2))))
    for bad in (0, (1, 0), (1,), (1, 2, 3), 1.5, (2, 2.0), True, (1, True), "22", None, np.array([[1, 2]])):
        with pytest.raises(ValueError, match=r"^f: k must be a positive int or a pair of them, got "):
            checks.pair("f", "k", bad)
    with pytest.raises(ValueError, match=r"^f: p must be an int >= 0 or a pair of them, got \(1, -1\)"):
        checks.pair("f", "p", (1, -1), minimum=0)


def test_number_refuses_an_integer_past_floats_range_with_a_value_error():
    with pytest.raises(ValueError, match=r"^f: x must be a number within float's range, got 1000000"):
        checks.number("f", "x", 10 ** 400)


@pytest.mark.parametrize("value", ["max", None, 1, np.array(["mean", "sum"]), ("mean",)])
def test_choice_refuses_anything_but_one_of_the_strings(value):
    with pytest.raises(ValueError, match=r"^loss: reduction must be one of \('mean', 'sum'\), got "):
        checks.choice("loss", "reduction", value, ("mean", "sum"))


def test_choice_returns_a_valid_string():
    assert checks.choice("loss", "reduction", "sum", ("mean", "sum")) == "sum"


@pytest.mark.parametrize("value, kept", [(2, 2), (np.int64(2), 2), ((1, 2), (1, 2)), ([3, 3], (3, 3)),
                                         (np.array([1, 2]), (1, 2))])
def test_int_or_pair_keeps_the_form_it_was_given_as_plain_ints(value, kept):
    got = checks.int_or_pair("Conv", "stride", value)
    assert got == kept and type(got) is type(kept)
    assert all(type(v) is int for v in (got if isinstance(got, tuple) else (got,)))
