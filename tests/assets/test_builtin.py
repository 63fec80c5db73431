"""Built-in assets (`builtin:` paths) and the toy task: resolved into fipo's cache, built once,
atomically, readable by verl; the toy reward gives partial credit digit by digit."""

from __future__ import annotations

import pytest

from fipo_cli.assets import builtin as local_assets
from fipo_cli.assets import toy_task
from fipo_cli.core.errors import ConfigError
from fipo_cli.experiment import config, recipes


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FIPO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_paths_resolve_into_the_cache_and_others_stay(cache):
    assert local_assets.resolve("builtin:toy-addition/train.parquet") == str(
        cache / "builtin" / "toy-addition-v1" / "train.parquet"
    )
    assert local_assets.resolve("builtin:tiny-qwen2") == str(cache / "builtin" / "tiny-qwen2-v1")
    assert local_assets.resolve("data/train.parquet") == "data/train.parquet"


def test_cache_dir_follows_xdg_without_fipo_cache_dir(tmp_path):
    assert local_assets.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "fipo"


def test_unknown_asset_is_a_config_error_naming_the_known_ones():
    raw = config.read_yaml(recipes.recipe_path("tiny"))
    with pytest.raises(ConfigError) as caught:
        config.build(raw, {"model.path": "builtin:huge-model", "data.val_files": ["builtin:toy-subtraction/x.parquet"]})
    message = str(caught.value)
    assert "model.path: 'builtin:huge-model': no built-in asset 'huge-model'" in message
    assert "builtin:tiny-qwen2, builtin:toy-addition" in message
    assert "'builtin:toy-subtraction/x.parquet'" in message


def test_the_toy_data_is_built_once_in_verls_columns(cache):
    paths = ["builtin:toy-addition/train.parquet", "builtin:toy-addition/validation.parquet", "data/mine.parquet"]
    built = local_assets.ensure(paths)
    assert built == [cache / "builtin" / "toy-addition-v1"]
    assert local_assets.ensure(paths) == []  # cached
    import pyarrow.parquet as pq

    train = pq.read_table(local_assets.resolve(paths[0])).to_pylist()
    assert len(train) == toy_task.TRAIN_PROBLEMS
    first = train[0]
    assert set(first) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    question = first["prompt"][0]["content"]
    a, b = (int(part) for part in question.removeprefix("What is ").removesuffix("?").split(" + "))
    assert first["reward_model"]["ground_truth"] == str(a + b) and 50 <= a <= 99 and 50 <= b <= 99
    assert not list(cache.glob("builtin/.*"))  # no scratch directory left


def test_a_failed_build_leaves_nothing_behind(cache, monkeypatch):
    def broken(directory):
        directory.mkdir(parents=True)
        (directory / "half.parquet").write_text("half")
        raise RuntimeError("disk full")

    monkeypatch.setitem(local_assets.ASSETS, "toy-addition", ("v1", broken))
    with pytest.raises(RuntimeError, match="disk full"):
        local_assets.ensure(["builtin:toy-addition/train.parquet"])
    assert not (cache / "builtin" / "toy-addition-v1").exists()
    assert not list((cache / "builtin").iterdir())


@pytest.mark.parametrize(
    "response, answer, score",
    [
        ("125", "125", 1.0),  # all three digits
        ("135", "125", 2 / 3),  # two in place
        ("12", "125", 2 / 3),  # a missing digit costs
        ("12500000", "125", 3 / 8),  # surplus digits cost
        ("1 2 x 5", "125", 1.0),  # only digits count
        ("521", "125", 1 / 3),  # position matters
        ("", "125", 0.0),
        ("no digits", "125", 0.0),
    ],
)
def test_toy_score_gives_partial_credit(response, answer, score):
    assert toy_task.compute_score(toy_task.DATA_SOURCE, response, answer) == pytest.approx(score)


def test_toy_problems_are_the_same_for_a_seed():
    assert toy_task.problems(5, seed=3) == toy_task.problems(5, seed=3) != toy_task.problems(5, seed=4)
