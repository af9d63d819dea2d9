"""Every folder convert_from_litgpt writes loads with transformers' AutoModelForCausalLM and gives our logits.

The checkpoints are bare LitGPT folders: random weights, model_config.yaml, no token ids anywhere. The HF class
is picked from the Config alone ("rule"), or named by a config.json that says nothing else ("named"), so every
class the converter writes is written at least once.
"""

import json
import os
from pathlib import Path

import pytest
import torch

from hf_tiny import FAMILIES, LLAMA_LIKE
from litgpt.config import Config
from litgpt.convert.architectures import ARCHITECTURES, EXPORT_ORDER
from litgpt.convert.hf_config import config_from_hf
from litgpt.convert.lit_to_hf import convert_from_litgpt
from litgpt.model import GPT

# family -> (HF config class, HF model class, config kwargs), the tiny families of the parity tests and more
BARE = {family: spec[:3] for family, spec in FAMILIES.items()}
# partial rotary: only Phi3ForCausalLM expresses it, and Phi3Config's default pad id (32000) is past the vocabulary
BARE["phi-4-mini"] = ("Phi3Config", "Phi3ForCausalLM", dict(LLAMA_LIKE, partial_rotary_factor=0.75))


def bare_checkpoint(family: str, folder: Path) -> Config:
    """A LitGPT folder (lit_model.pth, model_config.yaml) of `family`'s tiny config with random weights."""
    import transformers

    config_class, model_class, kwargs = BARE[family]
    hf_json = {**getattr(transformers, config_class)(**kwargs).to_dict(), "architectures": [model_class]}
    config = config_from_hf(hf_json, ARCHITECTURES[model_class], name=f"bare-{family}")
    folder.mkdir(parents=True)
    config.save(folder / "model_config.yaml")
    torch.manual_seed(0)
    model = GPT(config)
    with torch.no_grad():  # far from the near-zero init, so that a wrong mapping shows in the logits
        for param in model.parameters():
            param.normal_(0.0, 0.2)
    torch.save(model.state_dict(), folder / "lit_model.pth")
    return config


def test_every_class_the_converter_writes_is_covered():
    assert set(EXPORT_ORDER) <= {model_class for _, model_class, _ in BARE.values()}


@pytest.mark.parametrize("how", ["rule", "named"])
@pytest.mark.parametrize("family", list(BARE))
def test_exported_folder_loads_with_transformers(family, how, tmp_path):
    from transformers import AutoModelForCausalLM

    config = bare_checkpoint(family, tmp_path / "lit")
    if how == "named":
        (tmp_path / "lit" / "config.json").write_text(json.dumps({"architectures": [BARE[family][1]]}))
    convert_from_litgpt(tmp_path / "lit", tmp_path / "hf")
    written = json.loads((tmp_path / "hf" / "config.json").read_text())
    if how == "named" or family == "phi-4-mini":
        assert written["architectures"] == [BARE[family][1]]

    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="eager").eval()
    ours = GPT(config)
    ours.load_state_dict(torch.load(tmp_path / "lit" / "lit_model.pth", weights_only=True))
    idx = torch.randint(0, config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (hf_model(idx).logits - ours.eval()(idx)).abs().max() < 1e-4
    if how == "rule":  # LitGPT's file: model.pth, the same weights under the same names as one torch state dict
        from safetensors.torch import load_file

        state_dict = torch.load(tmp_path / "hf" / "model.pth", weights_only=True)
        safetensors = load_file(tmp_path / "hf" / "model.safetensors")
        assert set(safetensors) <= set(state_dict) <= set(safetensors) | {"lm_head.weight"}  # a tied head's too
        assert all(torch.equal(state_dict[key], tensor) for key, tensor in safetensors.items())


def test_model_pth_false_writes_the_safetensors_alone(tmp_path):
    bare_checkpoint("llama-3", tmp_path / "lit")
    convert_from_litgpt(tmp_path / "lit", tmp_path / "hf")
    assert (tmp_path / "hf" / "model.pth").is_file()
    convert_from_litgpt(tmp_path / "lit", tmp_path / "hf", model_pth=False)  # again, over the earlier export
    assert not (tmp_path / "hf" / "model.pth").exists() and (tmp_path / "hf" / "model.safetensors").is_file()


def test_written_files_honour_the_umask(tmp_path):
    bare_checkpoint("llama-3", tmp_path / "lit")
    previous = os.umask(0o022)
    try:
        convert_from_litgpt(tmp_path / "lit", tmp_path / "one")
        convert_from_litgpt(tmp_path / "lit", tmp_path / "shards", max_shard_size="20KB")
    finally:
        os.umask(previous)
    files = list((tmp_path / "one").iterdir()) + list((tmp_path / "shards").iterdir())
    assert len([f for f in files if f.suffix == ".safetensors"]) > 2
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: "0o644" for f in files}
