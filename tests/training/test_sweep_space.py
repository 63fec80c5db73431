"""The sweep grammar and its expansion: grids, ranges, quoting, random draws, and every syntax error."""

from __future__ import annotations

import itertools
import random

import pytest

from fipo_cli.core.errors import UsageError
from fipo_cli.training.sweep_space import Axis, grid, parse_axes, random_points, space_size


def values(token: str) -> tuple:
    (axis,) = parse_axes([token])
    return axis.values


def big_space() -> list[Axis]:
    return parse_axes(["gamma=range(0,10)", "tau=range(0,10)", "seed=range(0,10)"])


# (token, words the message must hold, the token's text before the offending character)
SYNTAX_ERRORS = [
    ("gamma0.9", "expected '='", "gamma0.9"),
    ("=0.9", "empty key", ""),
    ("gamma=", "empty value", "gamma="),
    ("gamma=0.9,", "empty value", "gamma=0.9,"),
    ("gamma=,,", "empty value", "gamma="),
    ("gamma=0.95,,0.99", "empty value", "gamma=0.95,"),
    ("gamma=0.9, ,0.99", "empty value", "gamma=0.9, "),
    ("tau=range()", "empty value", "tau=range("),
    ("tau=range(1,2,", "empty value", "tau=range(1,2,"),
    ("gamma=linspace(0,1,5)", "unknown function 'linspace'; the functions are range, choice, interval", "gamma="),
    ("tau=range(a,5)", "range() takes numbers", "tau=range("),
    ("tau=range(1,true)", "range() takes numbers", "tau=range(1,"),
    ("tau=range(1,'5')", "range() takes numbers", "tau=range(1,"),
    ("tau=range(1)", "2 or 3 numbers", "tau=range(1"),
    ("tau=range(1,2,3,4)", "2 or 3 numbers", "tau=range(1,2,3,"),
    ("tau=range(1,5,0)", "step must not be 0", "tau=range(1,5,"),
    ("tau=range(0,1,0.0)", "step must not be 0", "tau=range(0,1,"),
    ("tau=range(5,1)", "is empty", "tau="),
    ("tau=range(0.5,0.1,0.1)", "is empty", "tau="),
    ("lr=interval(1e-4,1e-6)", "low < high", "lr=interval(1e-4,"),
    ("lr=interval(1e-6,1e-6)", "low < high", "lr=interval(1e-6,"),
    ("lr=interval(1e-6)", "interval() takes 2 numbers", "lr=interval(1e-6"),
    ("lr=interval(0,x)", "interval() takes numbers", "lr=interval(0,"),
    ("tau=range(1,5", "unclosed '('", "tau=range"),
    ("tau=choice(1,'a)", "unclosed quote", "tau=choice(1,"),
    ("tracking.tags='a,b", "unclosed quote", "tracking.tags="),
    ("tracking.tags=a,\"b", "unclosed quote", "tracking.tags=a,"),
    ("tau=range(1,5)x", "text after range(...)", "tau=range(1,5)"),
    ("tau=choice(1,2),3", "text after choice(...)", "tau=choice(1,2)"),
    ("gamma=0.9)", "unmatched ')'", "gamma=0.9"),
    ("tracking.tags='a'b", "text after the closing quote", "tracking.tags='a'"),
    ("tracking.tags=it's", "quote must enclose the whole value", "tracking.tags=it"),
    ("tracking.tags=x,a(b)", "'(' inside a value", "tracking.tags=x,a"),
    ("tracking.tags=a(b)", "unknown function 'a'", "tracking.tags="),
    ("gamma=0.9,range(1,2)", "'(' inside a value", "gamma=0.9,range"),
    ("data.val_files=[a,b", "unclosed '['", "data.val_files="),
    ("gamma=0.9,0.9", "duplicate value 0.9", "gamma=0.9,"),
    ("gamma=1,1.0", "duplicate value 1.0", "gamma=1,"),
    ("tau=choice(16,32,16)", "duplicate value 16", "tau=choice(16,32,"),
    ("gama=0.9", "'gama' is not a known key; did you mean 'gamma'?", ""),
    ("algorithm.gama=0.9", "did you mean 'algorithm.gamma'?", ""),
]


def caret_column(error: UsageError) -> tuple[str, int]:
    """The token line of the message and the column of the caret under it."""
    lines = error.message.split("\n")
    assert len(lines) == 3, error.message
    assert set(lines[2].strip()) == {"^"} and lines[2].count("^") == 1
    return lines[1], lines[2].index("^")


def test_grid_is_the_cartesian_product_first_axis_slowest():
    axes = parse_axes(["gamma=0.95,0.99", "tau=range(16,65,16)", "eps_f_high=choice(0.1,0.2)", "seed=7"])
    lists = [[0.95, 0.99], [16, 32, 48, 64], [0.1, 0.2], [7]]
    expected = [dict(zip(["gamma", "tau", "eps_f_high", "seed"], combo, strict=True)) for combo in itertools.product(*lists)]
    points = grid(axes)
    assert points == expected  # order included
    assert [list(point) for point in points] == [["gamma", "tau", "eps_f_high", "seed"]] * 16
    assert len(points) == space_size(axes) == 2 * 4 * 2 * 1
    assert all(point["seed"] == 7 for point in points)  # a single value is fixed for every run
    assert points[0] == {"gamma": 0.95, "tau": 16, "eps_f_high": 0.1, "seed": 7}
    assert points[1] == {"gamma": 0.95, "tau": 16, "eps_f_high": 0.2, "seed": 7}


def test_keys_stay_as_written():
    axes = parse_axes(["algorithm.gamma=0.9", "lr=1e-6"])
    assert [axis.key for axis in axes] == ["algorithm.gamma", "lr"]
    assert axes[0] == Axis("algorithm.gamma", (0.9,), "algorithm.gamma=0.9")
    assert grid(axes) == [{"algorithm.gamma": 0.9, "lr": 1e-6}]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("range(0,5)", (0, 1, 2, 3, 4)),
        ("range(16,65,16)", (16, 32, 48, 64)),
        ("range(10,0,-3)", (10, 7, 4, 1)),
        ("range( 1 , 3 )", (1, 2)),
        ("range(0,1,0.25)", (0.0, 0.25, 0.5, 0.75)),
        ("range(0.1,0.5,0.1)", (0.1, 0.2, 0.3, 0.4)),  # not 0.30000000000000004
        ("range(0,0.3,0.1)", (0.0, 0.1, 0.2)),  # stop stays exclusive despite 0.3/0.1 = 2.9999999999999996
        ("range(0,0.7,0.1)", (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)),
        ("range(0.1,0.4,0.1)", (0.1, 0.2, 0.3)),  # (0.4-0.1)/0.1 = 3.0000000000000004: 0.4 stays out
        ("range(0.2,0.8,0.2)", (0.2, 0.4, 0.6)),
        ("range(1e-14,4e-14,1e-14)", (1e-14, 2e-14, 3e-14)),  # rounding keeps tiny steps
        ("range(1,2,0.5)", (1.0, 1.5)),
        ("range(1,0,-0.25)", (1.0, 0.75, 0.5, 0.25)),
    ],
)
def test_range(text, expected):
    got = values(f"tau={text}")
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]


def test_choice_is_a_list():
    assert values("eps_f_high=choice(0.1,0.2,0.3)") == values("eps_f_high=0.1,0.2,0.3") == (0.1, 0.2, 0.3)
    assert values("eps_f_high=choice(0.1)") == (0.1,)


@pytest.mark.parametrize(
    "token, expected",
    [
        ("tracking.tags='a,b',c", ("a,b", "c")),
        ('tracking.tags="a,b",c', ("a,b", "c")),
        ("tracking.tags=c,'a,b'", ("c", "a,b")),
        ("tracking.tags=choice('a,b', \"c)d\")", ("a,b", "c)d")),
        ("tracking.tags=\"it's\"", ("it's",)),
        ("tracking.run_name='16','true'", ("16", "true")),  # quoted values stay strings
        ("tracking.run_name=''", ("",)),
    ],
)
def test_quoted_values(token, expected):
    got = values(token)
    assert got == expected
    assert all(type(v) is str for v in got)


@pytest.mark.parametrize(
    "token, expected",
    [
        ("n=16,32", (16, 32)),
        ("gamma=0.99", (0.99,)),
        ("lr=1e-6,3e-6", (1e-06, 3e-06)),
        ("algorithm.kl_in_reward=true,false", (True, False)),
        ("cluster.partition=gpu,debug", ("gpu", "debug")),
        ("algorithm.gamma=null,0.9", (None, 0.9)),
        ("data.val_files=[a.parquet,b.parquet],[c.parquet]", (["a.parquet", "b.parquet"], ["c.parquet"])),
    ],
)
def test_values_are_typed(token, expected):
    got = values(token)
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]


def test_random_is_deterministic_and_uses_its_own_generator():
    random.seed(1)
    state = random.getstate()
    first = random_points(big_space(), 20, seed=3)
    assert random.getstate() == state  # the global RNG is neither used nor disturbed
    random.seed(99)
    assert random_points(big_space(), 20, seed=3) == first
    assert random_points(big_space(), 20, seed=4) != first
    assert random_points(big_space(), 5, seed=3) == first[:5]  # draw order is kept


def test_random_draws_distinct_grid_points_in_token_order():
    axes = big_space()
    points = random_points(axes, 200, seed=0)
    as_tuples = [tuple(point.values()) for point in points]
    assert len(set(as_tuples)) == 200
    assert all(list(point) == ["gamma", "tau", "seed"] for point in points)
    assert all(point in grid(axes) for point in points[:20])
    small = parse_axes(["gamma=0.9,0.99", "tau=16,32,64"])
    everything = random_points(small, 6, seed=5)
    assert sorted(map(repr, everything)) == sorted(map(repr, grid(small)))


def test_a_discrete_draw_is_a_sample_of_grid_indices():
    # The documented mapping: point k is grid()[i_k] for Random(seed).sample(range(size), samples).
    axes = parse_axes(["gamma=0.9,0.99", "tau=16,32,64", "seed=range(0,5)"])
    indices = random.Random(7).sample(range(space_size(axes)), 12)
    assert random_points(axes, 12, seed=7) == [grid(axes)[i] for i in indices]


def test_random_with_interval_stays_in_bounds():
    axes = parse_axes(["lr=interval(1e-6,1e-5)", "gamma=0.9,0.99"])
    assert axes[0].values == () and axes[0].interval == (1e-6, 1e-5)
    assert space_size(axes) is None
    points = random_points(axes, 50, seed=1)
    assert points == random_points(axes, 50, seed=1)
    assert all(1e-6 <= p["lr"] <= 1e-5 and isinstance(p["lr"], float) for p in points)
    assert {p["gamma"] for p in points} == {0.9, 0.99}
    assert len({p["lr"] for p in points}) == 50


def test_random_refuses_more_samples_than_points():
    axes = parse_axes(["gamma=0.9,0.99", "tau=16,32"])
    assert len(random_points(axes, 4, seed=0)) == 4
    with pytest.raises(UsageError) as caught:
        random_points(axes, 5, seed=0)
    assert caught.value.exit_code == 2
    assert "5" in caught.value.message and "4" in caught.value.message
    assert "--strategy grid" in str(caught.value)


@pytest.mark.parametrize("samples", [0, -1])
def test_random_needs_a_sample(samples):
    with pytest.raises(UsageError) as caught:
        random_points(parse_axes(["gamma=0.9,0.99"]), samples, seed=0)
    assert caught.value.exit_code == 2 and "--samples" in caught.value.message


def test_grid_refuses_an_interval():
    with pytest.raises(UsageError) as caught:
        grid(parse_axes(["gamma=0.9,0.99", "lr=interval(1e-6,1e-5)"]))
    assert caught.value.exit_code == 2
    assert "lr=interval(1e-6,1e-5)" in caught.value.message and "--strategy random" in str(caught.value)


def test_nothing_to_sweep():
    for call in (lambda: parse_axes([]), lambda: grid([]), lambda: random_points([], 3, seed=0)):
        with pytest.raises(UsageError, match="at least one KEY=VALUES") as caught:
            call()
        assert caught.value.exit_code == 2
    assert space_size([]) == 0


@pytest.mark.parametrize("token, words, before", SYNTAX_ERRORS, ids=[case[0] for case in SYNTAX_ERRORS])
def test_syntax_errors_point_at_the_offending_character(token, words, before):
    assert token.startswith(before)
    with pytest.raises(UsageError) as caught:
        parse_axes([token])
    error = caught.value
    assert error.exit_code == 2
    assert repr(token) in error.message.split("\n")[0]
    assert words in error.message
    assert error.hint
    line, column = caret_column(error)
    assert line == f"  {token}"
    assert column == len("  ") + len(before)  # the index of the offending character in the token line


def test_the_example_from_the_brief_renders_exactly():
    with pytest.raises(UsageError) as caught:
        parse_axes(["gamma=0.95,,0.99"])
    assert caught.value.message == "sweep axis 'gamma=0.95,,0.99': empty value\n  gamma=0.95,,0.99\n             ^"


def test_a_bad_later_token_is_named():
    with pytest.raises(UsageError) as caught:
        parse_axes(["gamma=0.9", "tau=range(5,1)"])
    assert "'tau=range(5,1)'" in caught.value.message and "gamma=0.9" not in caught.value.message


@pytest.mark.parametrize(
    "tokens",
    [["gamma=0.9", "algorithm.gamma=0.95"], ["algorithm.gamma=0.9", "gamma=0.95"], ["tau=16", "tau=32"]],
)
def test_a_key_is_swept_once(tokens):
    with pytest.raises(UsageError) as caught:
        parse_axes(tokens)
    assert caught.value.exit_code == 2
    assert "already swept" in caught.value.message and repr(tokens[0]) in caught.value.message
    line, column = caret_column(caught.value)
    assert line == f"  {tokens[1]}" and column == 2
