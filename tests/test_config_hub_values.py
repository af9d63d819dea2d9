"""Every config_hub recipe that LitGPT 0.5.13 also ships holds LitGPT's values, key for key.

`litgpt_recipes.json` records those values (read from LitGPT's v0.5.13 files, nested keys joined with dots),
parsed the way the CLI parses a `--config` file: jsonargparse's YAML loader, which reads `6e-4` as a number.
"""

import json
from pathlib import Path
from typing import Any, Dict

import pytest

ROOT = Path(__file__).parents[1]
HUB = ROOT / "config_hub"
LITGPT = json.loads((Path(__file__).parent / "litgpt_recipes.json").read_text(encoding="utf-8"))
OUR_OWN = {"pretrain/quickstart.yaml"}


def flat(mapping: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def cli_values(path: Path) -> Dict[str, Any]:
    from jsonargparse import get_loader

    return flat(get_loader("yaml")(path.read_text(encoding="utf-8")))


def test_the_shared_recipes_are_litgpts_and_ours_are_apart():
    ours = {str(p.relative_to(HUB)) for p in HUB.glob("*/**/*.yaml")}
    assert ours - OUR_OWN == set(LITGPT)
    assert len(LITGPT) == 46


@pytest.mark.parametrize("recipe", sorted(LITGPT))
def test_recipe_values_equal_litgpts(recipe):
    ours, theirs = cli_values(HUB / recipe), LITGPT[recipe]
    # json.dumps tells 0 from 0.0 and 1 from True, which == does not
    differ = {key: (ours.get(key, "<missing>"), theirs.get(key, "<missing>")) for key in set(ours) | set(theirs)
              if key not in ours or key not in theirs or json.dumps(ours[key]) != json.dumps(theirs[key])}
    assert not differ, f"{recipe}: (ours, LitGPT's) {differ}"


@pytest.mark.parametrize("path", sorted((HUB / "pretrain").glob("*.yaml")), ids=lambda p: p.name)
def test_pretrain_recipe_parses_through_the_cli(path, capsys, monkeypatch):
    import yaml
    from jsonargparse import CLI

    from litgpt.train.pretrain import setup

    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit:
        CLI(setup, args=["--config", str(path.relative_to(ROOT)), "--print_config"])
    assert exit.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optimizer"]["init_args"]["lr"] == cli_values(path)["optimizer.init_args.lr"]
    assert isinstance(printed["optimizer"]["init_args"]["lr"], float)
    assert isinstance(printed["train"]["min_lr"], float)
