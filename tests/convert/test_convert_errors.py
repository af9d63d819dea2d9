"""Bad input to the converters: one clear CheckpointError, and no lit_model.pth (nor a .tmp) left behind."""

import json
import subprocess
import sys

import pytest
import torch

from litgpt.checkpoint import CheckpointError
from litgpt.convert.hf_to_lit import convert_to_litgpt
from litgpt.convert.lit_to_hf import convert_from_litgpt


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("lit_model") or p.name.endswith(".tmp"))


def test_folder_without_weights(hf_checkpoint):
    hf_dir, _ = hf_checkpoint("llama-2")
    for path in hf_dir.glob("model*.safetensors*"):
        path.unlink()
    with pytest.raises(CheckpointError, match="holds no model weights"):
        convert_to_litgpt(hf_dir)
    assert leftovers(hf_dir) == []


def test_unknown_model_name(hf_checkpoint):
    hf_dir, _ = hf_checkpoint("pythia")
    with pytest.raises(CheckpointError, match="'no-such-model' is not a known model name"):
        convert_to_litgpt(hf_dir, model_name="no-such-model")
    assert leftovers(hf_dir) == []


def test_model_name_that_does_not_fit(hf_checkpoint):
    hf_dir, _ = hf_checkpoint("pythia")
    with pytest.raises(CheckpointError, match="does not fit this checkpoint's config.json"):
        convert_to_litgpt(hf_dir, model_name="pythia-14m")
    assert leftovers(hf_dir) == []


def test_unsupported_architecture(hf_checkpoint):
    hf_dir, _ = hf_checkpoint("llama-2")
    config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    with pytest.raises(CheckpointError, match="unsupported architecture BertForMaskedLM"):
        convert_to_litgpt(hf_dir)
    assert leftovers(hf_dir) == []


@pytest.mark.parametrize(
    "family, change, message",
    [
        ("stablelm", {"qk_layernorm": True}, "qk_layernorm=True is not supported"),
        ("qwen-3-moe", {"norm_topk_prob": False}, "norm_topk_prob=False is not supported"),
        ("falcon-7b", {"alibi": True}, "alibi=True is not supported"),
        ("llama-2", {"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}}, "RoPE scaling 'dynamic' is not supported"),
        ("llama-2", {"rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4}}, "LongRoPE needs short_factor and long_factor"),
        ("llama-2", {"hidden_act": "relu"}, "activation 'relu' is not supported"),
    ],
)
def test_unsupported_variant(hf_checkpoint, family, change, message):
    hf_dir, _ = hf_checkpoint(family)
    config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match=message):
        convert_to_litgpt(hf_dir)
    assert leftovers(hf_dir) == []


def test_truncated_safetensors_keeps_the_previous_lit_model(hf_checkpoint):
    hf_dir, _ = hf_checkpoint("mistral")
    (hf_dir / "lit_model.pth").write_bytes(b"previous")
    weights = hf_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file"):
        convert_to_litgpt(hf_dir)
    assert leftovers(hf_dir) == ["lit_model.pth"]
    assert (hf_dir / "lit_model.pth").read_bytes() == b"previous"


def test_truncated_bin(hf_checkpoint):
    hf_dir, _ = hf_checkpoint("pythia")  # saved as pytorch_model.bin
    weights = hf_dir / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="pytorch_model.bin cannot be read"):
        convert_to_litgpt(hf_dir)
    assert leftovers(hf_dir) == []


def test_missing_shard(hf_checkpoint):
    hf_dir, _ = hf_checkpoint("llama-2")  # sharded
    next(hf_dir.glob("model-00002-of-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="lists shards that are missing"):
        convert_to_litgpt(hf_dir)
    assert leftovers(hf_dir) == []


def test_unexpected_weight(hf_checkpoint):
    from safetensors.torch import load_file, save_file

    hf_dir, _ = hf_checkpoint("qwen-3")
    weights = load_file(hf_dir / "model.safetensors")
    weights["model.layers.0.self_attn.rogue_proj.weight"] = torch.zeros(2, 2)
    save_file(weights, hf_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match="unexpected weight 'model.layers.0.self_attn.rogue_proj.weight'"):
        convert_to_litgpt(hf_dir)
    assert leftovers(hf_dir) == []


def test_bad_dtype(hf_checkpoint):
    hf_dir, _ = hf_checkpoint("olmo")
    with pytest.raises(CheckpointError, match="unknown dtype 'int4'"):
        convert_to_litgpt(hf_dir, dtype="int4")


def test_convert_from_litgpt_rejects_unmerged_lora(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("llama-2")
    convert_to_litgpt(hf_dir)
    state_dict = torch.load(hf_dir / "lit_model.pth", weights_only=True)
    state_dict["transformer.h.0.attn.qkv.lora_A"] = torch.zeros(8, 64)
    torch.save(state_dict, hf_dir / "lit_model.pth")
    with pytest.raises(CheckpointError, match="merge them first"):
        convert_from_litgpt(hf_dir, tmp_path / "out")


def test_convert_from_litgpt_without_weights(tmp_path):
    (tmp_path / "lit").mkdir()
    with pytest.raises(CheckpointError, match="pass --model_name"):
        convert_from_litgpt(tmp_path / "lit", tmp_path / "out")
    with pytest.raises(CheckpointError, match="lit_model.pth does not exist"):
        convert_from_litgpt(tmp_path / "lit", tmp_path / "out", model_name="pythia-14m")


def test_cli_prints_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                                                      "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 96,
                                                      "intermediate_size": 96, "hidden_act": "silu"}))
    result = subprocess.run(
        [sys.executable, "-m", "litgpt", "convert_to_litgpt", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"litgpt convert_to_litgpt: error: {tmp_path} holds no model weights (model.safetensors, pytorch_model.bin or their sharded forms)"
    ]
