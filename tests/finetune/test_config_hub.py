"""Every recipe in config_hub/finetune parses through its command's parser and names a data set that exists."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
RECIPES = sorted((ROOT / "config_hub" / "finetune").glob("*/*.yaml"))


def test_recipes_exist():
    assert len(RECIPES) >= 12
    assert {p.stem for p in RECIPES} == {"lora", "qlora", "full"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_parses(path, capsys):
    from jsonargparse import auto_cli

    import litgpt.data
    from litgpt.train import finetune

    command = "finetune_full" if path.stem == "full" else "finetune_lora"
    with pytest.raises(SystemExit) as exit:
        auto_cli({command: getattr(finetune, command)}, args=[command, "--config", str(path), "--print_config"], as_positional=True)
    assert exit.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    recipe = yaml.safe_load(path.read_text())
    assert printed["train"]["max_seq_length"] == recipe["train"]["max_seq_length"]
    assert printed["optimizer"]["init_args"]["lr"] == recipe["optimizer"]["init_args"]["lr"]
    assert isinstance(printed["train"]["min_lr"], float)
    if path.stem == "qlora":
        assert printed["quantize"] == "bnb.nf4"
    data = recipe["data"]
    cls = getattr(litgpt.data, data["class_path"].rsplit(".", 1)[1])
    cls(**data["init_args"])  # the options are the data set's own
