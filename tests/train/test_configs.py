"""Every recipe in config_hub/pretrain parses; the quick start goes through the command's own parser."""

from pathlib import Path

import pytest
import yaml

HUB = Path(__file__).parents[2] / "config_hub" / "pretrain"
KEYS = {"out_dir", "data", "train", "eval", "tokenizer_dir", "logger_name", "seed", "devices", "optimizer"}


@pytest.mark.parametrize("path", sorted(HUB.glob("*.yaml")), ids=lambda p: p.name)
def test_recipe_is_yaml_with_the_pretrain_keys(path):
    from litgpt.train.pretrain import setup

    recipe = yaml.safe_load(path.read_text())
    assert KEYS <= set(recipe), KEYS - set(recipe)
    assert recipe.get("model_name") or recipe.get("model_config")
    parameters = set(setup.__code__.co_varnames[: setup.__code__.co_argcount])
    assert set(recipe) <= parameters, set(recipe) - parameters
    assert {"global_batch_size", "micro_batch_size", "max_norm", "min_lr"} <= set(recipe["train"])


def test_quickstart_parses_through_the_setup_parser(monkeypatch):
    from jsonargparse import ActionConfigFile, ArgumentParser

    from litgpt.config import Config
    from litgpt.data import TextFiles
    from litgpt.train.pretrain import setup

    monkeypatch.chdir(HUB.parents[1])  # its paths are relative to the repository root
    parser = ArgumentParser()
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(setup)
    cfg = parser.instantiate_classes(parser.parse_args(["--config", "config_hub/pretrain/quickstart.yaml"]))
    assert isinstance(cfg.model_config, Config) and cfg.model_config.n_layer == 4
    assert isinstance(cfg.data, TextFiles) and cfg.data.train_data_path.is_dir()
    assert (cfg.tokenizer_dir / "tokenizer.json").is_file()
    assert cfg.optimizer["init_args"]["lr"] == pytest.approx(3e-3)
    assert cfg.train.max_steps and cfg.train.micro_batch_size <= cfg.train.global_batch_size


def test_quickstart_print_config_through_cli(capsys, monkeypatch):
    from jsonargparse import CLI

    from litgpt.train.pretrain import setup

    monkeypatch.chdir(HUB.parents[1])
    with pytest.raises(SystemExit):
        CLI(setup, args=["--config", "config_hub/pretrain/quickstart.yaml", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["class_path"] == "litgpt.data.TextFiles"
    assert printed["model_config"]["n_embd"] == 192
