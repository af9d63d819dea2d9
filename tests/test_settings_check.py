"""litgpt/settings_check.py: every numeric setting of training and generation has one allowed range, checked in
one place, and each problem is one line naming the flag, the range and the value."""

import math
from pathlib import Path

import pytest
import yaml

from litgpt.settings_check import check_generation, check_training, generation_problems, training_problems
from litgpt.train.args import EvalArgs, TrainArgs

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        (dict(max_norm=-1.0), "--train.max_norm must be a finite number > 0 (or unset), got -1.0"),
        (dict(max_norm=0.0), "--train.max_norm must be a finite number > 0 (or unset), got 0.0"),
        (dict(min_lr=-1.0), "--train.min_lr must be a finite number >= 0, got -1.0"),
        (dict(min_lr=math.nan), "--train.min_lr must be a finite number >= 0, got nan"),
        (dict(micro_batch_size=0), "--train.micro_batch_size must be an integer >= 1, got 0"),
        (dict(global_batch_size=2.5), "--train.global_batch_size must be an integer >= 1, got 2.5"),
        (dict(micro_batch_size=8, global_batch_size=4), "--train.global_batch_size (4) must not be less than --train.micro_batch_size (8)"),
        (dict(lr_warmup_steps=-1), "--train.lr_warmup_steps must be an integer >= 0 (or unset), got -1"),
        (dict(lr_warmup_steps=None, lr_warmup_fraction=1.5), "--train.lr_warmup_fraction must be a finite number >= 0 and <= 1 (or unset), got 1.5"),
        (dict(max_steps=0), "--train.max_steps must be an integer >= 1 (or unset), got 0"),
        (dict(max_time=-5.0), "--train.max_time must be a finite number > 0 (or unset), got -5.0"),
        (dict(save_interval=True), "--train.save_interval must be an integer >= 1 (or unset), got True"),
    ],
)
def test_each_train_number_out_of_range_is_named_with_its_range(train, expected):
    assert training_problems(TrainArgs(**train), EvalArgs()) == [expected]


def test_eval_optimizer_and_data_numbers():
    assert training_problems(TrainArgs(), EvalArgs(interval=0, max_new_tokens=0)) == [
        "--eval.interval must be an integer >= 1, got 0",
        "--eval.max_new_tokens must be an integer >= 1 (or unset), got 0",
    ]
    optimizer = {"class_path": "AdamW", "init_args": {"lr": -0.1, "betas": [0.9, 1.0], "weight_decay": -1, "eps": 0}}
    assert training_problems(TrainArgs(), EvalArgs(), optimizer) == [
        "--optimizer.lr must be a finite number >= 0, got -0.1",
        "--optimizer.weight_decay must be a finite number >= 0, got -1",
        "--optimizer.eps must be a finite number > 0, got 0",
        "--optimizer.betas must be a finite number >= 0 and < 1, got 1.0",
    ]
    # min_lr above the lr: the cosine schedule would rise
    assert training_problems(TrainArgs(min_lr=0.01), EvalArgs(), {"class_path": "SGD", "init_args": {"lr": 0.001}}) == [
        "--train.min_lr (0.01) must be at most the optimizer's lr (0.001)"
    ]
    assert training_problems(TrainArgs(), EvalArgs(), data={"num_workers": -1, "val_split_fraction": 1.0}) == [
        "--data.val_split_fraction must be a finite number > 0 and < 1 (or unset), got 1.0",
        "--data.num_workers must be an integer >= 0 (or unset), got -1",
    ]


def test_all_problems_in_one_line_and_a_warmup_past_max_steps_only_warns(capsys):
    with pytest.raises(ValueError) as error:
        check_training(TrainArgs(max_norm=-1.0, min_lr=-1.0), EvalArgs())
    assert str(error.value) == (
        "--train.min_lr must be a finite number >= 0, got -1.0; --train.max_norm must be a finite number > 0 (or unset), got -1.0"
    )
    check_training(TrainArgs(lr_warmup_steps=200, max_steps=100), EvalArgs())
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and "Warning: --train.lr_warmup_steps (200) exceeds" in warning  # one line


def test_every_recipe_of_config_hub_passes():
    from jsonargparse import get_loader

    recipes = sorted((ROOT / "config_hub").rglob("*.yaml"))
    assert len(recipes) > 20
    for path in recipes:
        recipe = get_loader("yaml")(path.read_text())
        train = TrainArgs(**(recipe.get("train") or {}))
        eval = EvalArgs(**(recipe.get("eval") or {}))
        data = (recipe.get("data") or {}).get("init_args") if isinstance(recipe.get("data"), dict) else None
        assert training_problems(train, eval, recipe.get("optimizer"), data) == [], path


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(temperature=-0.5), "temperature must be a finite number >= 0, got -0.5"),
        (dict(temperature=math.inf), "temperature must be a finite number >= 0, got inf"),
        (dict(top_k=0), "top_k must be an integer >= 1 (or unset), got 0"),
        (dict(top_p=1.5), "top_p must be a finite number >= 0 and <= 1, got 1.5"),
        (dict(top_p=-0.1), "top_p must be a finite number >= 0 and <= 1, got -0.1"),
        (dict(max_new_tokens=0), "max_new_tokens must be an integer >= 1 (or unset), got 0"),
    ],
)
def test_generation_numbers(kwargs, expected):
    assert generation_problems(**kwargs) == [expected]
    with pytest.raises(ValueError, match="^" + expected.replace("(", r"\(").replace(")", r"\)") + "$"):
        check_generation(**kwargs)


def test_generation_defaults_and_edges_pass():
    # top_p 0 is greedy in LitGPT, temperature 0 is greedy
    assert generation_problems(temperature=0.0, top_k=None, top_p=0.0, max_new_tokens=1) == []
    assert generation_problems(temperature=1e-40, top_k=1, top_p=1.0, max_new_tokens=None) == []


def test_the_api_and_the_sampler_refuse_the_same_numbers(tiny_checkpoint):
    import torch

    from litgpt import LLM
    from litgpt.engine.sampling import sample

    with pytest.raises(ValueError, match=r"^top_k must be an integer >= 1 \(or unset\), got 0$"):
        sample(torch.randn(1, 8), top_k=0)
    llm = LLM.load(str(tiny_checkpoint))
    with pytest.raises(ValueError, match=r"^max_new_tokens must be an integer >= 1 \(or unset\), got 0$"):
        llm.generate("Hello", max_new_tokens=0)
    with pytest.raises(ValueError, match=r"^top_p must be a finite number >= 0 and <= 1, got 2"):
        llm.generate("Hello", top_p=2.0)


def test_recipes_are_read_with_yaml_too():
    # the quick-start recipe sets the optimizer as {class_path, init_args}: checked as such
    recipe = yaml.safe_load((ROOT / "config_hub/pretrain/quickstart.yaml").read_text())
    assert training_problems(TrainArgs(**recipe["train"]), EvalArgs(**recipe["eval"]), recipe["optimizer"]) == []
