"""The converters and the registry: every registry model has an HF class; a folder named like an entry uses it."""

import json

import torch
from hf_tiny import randomize

from litgpt.config import Config, registry
from litgpt.convert.architectures import ARCHITECTURES
from litgpt.convert.hf_config import config_from_hf, differences
from litgpt.convert.hf_to_lit import convert_to_litgpt
from litgpt.convert.lit_to_hf import export_architecture


def test_every_registry_model_has_a_hugging_face_class():
    classes = {}
    for entry in registry():
        config = Config(**entry)
        arch, hf_config = export_architecture(config)  # raises if no class computes the same thing
        assert differences(config, config_from_hf(hf_config, arch)) == []
        classes.setdefault(arch.hf_class, entry["name"])
    # the families the registry holds, each written as its own class
    assert {"LlamaForCausalLM", "GPTNeoXForCausalLM", "FalconForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM",
            "Gemma3ForCausalLM", "MistralForCausalLM", "MixtralForCausalLM", "PhiForCausalLM", "Phi3ForCausalLM",
            "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM", "OlmoForCausalLM", "Olmo2ForCausalLM",
            "StableLmForCausalLM"} <= set(classes)


def test_folder_named_like_a_registry_entry_uses_it(tmp_path, capsys):
    import transformers

    registry_config = Config.from_name("pythia-14m")
    arch, hf_config = export_architecture(registry_config)
    folder = tmp_path / "EleutherAI" / "pythia-14m"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(hf_config))
    torch.manual_seed(0)
    model = transformers.GPTNeoXForCausalLM(transformers.AutoConfig.from_pretrained(folder)).eval()
    randomize(model)
    model.save_pretrained(folder)

    convert_to_litgpt(folder)
    written = Config.from_file(folder / "model_config.yaml")
    assert written.name == "pythia-14m" and written.hf_config == {"org": "EleutherAI", "name": "pythia-14m"}
    assert "Warning" not in capsys.readouterr().err  # config.json agrees with the registry entry
    from litgpt.checkpoint import load_model

    idx = torch.randint(0, 50000, (1, 8))
    with torch.no_grad():
        assert (load_model(folder, precision="32-true")(idx) - model(idx).logits).abs().max() < 1e-4


def test_architecture_tables_are_consistent():
    for arch in ARCHITECTURES.values():
        assert arch.qkv_layout in ("split", "fused", "interleaved")
        assert len(arch.qkv) == (3 if arch.qkv_layout == "split" else 1)
        assert all(name in Config.__dataclass_fields__ for name in {**arch.config, **arch.keys})


def test_registry_entry_used_for_what_config_json_cannot_express(tmp_path, capsys):
    """Without config.json, or with one we cannot derive from, a folder named like an entry converts by the registry."""
    import transformers

    folder = tmp_path / "pythia-14m"
    folder.mkdir()
    arch, hf_config = export_architecture(Config.from_name("pythia-14m"))
    model = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**hf_config)).eval()
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}))
    convert_to_litgpt(folder)
    err = capsys.readouterr().err
    assert "RoPE scaling 'dynamic' is not supported" in err and "using the registry entry 'pythia-14m'" in err

    (folder / "config.json").unlink()
    (folder / "lit_model.pth").unlink()
    convert_to_litgpt(folder)  # the weight names come from the class the registry config maps to
    assert Config.from_file(folder / "model_config.yaml").name == "pythia-14m"
