"""RoPE scalings of the families we list (longrope, llama3, yarn, linear): logits equal transformers' at positions
below and beyond original_max_position_embeddings (16 in the tiny configs), in one forward and KV-cached step by step."""

import math

import pytest
import torch

from litgpt.checkpoint import CheckpointError, load_model
from litgpt.config import Config
from litgpt.convert.hf_to_lit import convert_to_litgpt
from hf_tiny import FAMILIES, LLAMA_LIKE, randomize

TOLERANCE = 1e-4
ORIGINAL = 16  # original_max_position_embeddings of every scaled tiny config
BELOW, BEYOND = 12, 40  # sequence lengths


def qwen3_yarn():
    import transformers

    kwargs = dict(LLAMA_LIKE, head_dim=32, rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": ORIGINAL})
    model = transformers.Qwen3ForCausalLM._from_config(transformers.Qwen3Config(**kwargs), attn_implementation="eager").eval()
    randomize(model)
    return model


@pytest.fixture
def converted(hf_checkpoint, tmp_path):
    def make(family):
        if family == "qwen-3-yarn":
            hf_model = qwen3_yarn()
            hf_model.save_pretrained(tmp_path / "hf")
            hf_dir = tmp_path / "hf"
        else:
            hf_dir, hf_model = hf_checkpoint(family)
        convert_to_litgpt(hf_dir)
        return hf_model, load_model(hf_dir, precision="32-true")

    return make


def stepwise_hf(model, idx, prompt):
    """transformers' logits for idx's positions, a prefill of `prompt` tokens then one token a step with its cache."""
    with torch.no_grad():
        out = model(idx[:, :prompt], use_cache=True)
        logits, cache = [out.logits], out.past_key_values
        for t in range(prompt, idx.size(1)):
            out = model(idx[:, t : t + 1], cache=cache, use_cache=True)
            logits.append(out.logits)
            cache = out.past_key_values
    return torch.cat(logits, 1)


def stepwise_ours(model, idx, prompt):
    model.set_kv_cache(idx.size(0))
    with torch.no_grad():
        logits = [model(idx[:, :prompt], input_pos=torch.arange(prompt), input_pos_maxp1=prompt)]
        for t in range(prompt, idx.size(1)):
            logits.append(model(idx[:, t : t + 1], input_pos=torch.tensor([t]), input_pos_maxp1=t + 1))
    model.clear_kv_cache()
    return torch.cat(logits, 1)


@pytest.mark.parametrize("family", ["phi-3-longrope", "phi-4-mini", "llama-3", "qwen-3-yarn", "gemma-3"])
def test_rope_scaling_parity_below_and_beyond_original_context(family, converted, parity_report):
    hf_model, ours = converted(family)
    idx = torch.randint(0, 90, (2, BEYOND), generator=torch.Generator().manual_seed(3))
    diffs = {}
    with torch.no_grad():
        for name, T in (("below", BELOW), ("beyond", BEYOND)):
            diffs[name] = (ours(idx[:, :T]) - hf_model(idx[:, :T]).logits).abs().max().item()
    # KV-cached: a prompt inside the original context, then steps that cross it (LongRoPE switches factors there)
    diffs["cached"] = (stepwise_ours(ours, idx, BELOW) - stepwise_hf(hf_model, idx, BELOW)).abs().max().item()
    print(f"\n{family} ({ours.config.rope_scaling}): max abs logit diff below {diffs['below']:.2e}, "
          f"beyond {diffs['beyond']:.2e}, KV-cached across {diffs['cached']:.2e}")
    assert all(d < TOLERANCE for d in diffs.values()), diffs


def test_longrope_factors_switch_beyond_the_original_context(converted):
    """Beyond the original context the long factors change the logits (so the test above can tell them apart)."""
    _, ours = converted("phi-3-longrope")
    assert ours.config.rope_scaling == "longrope"
    idx = torch.randint(0, 90, (1, BEYOND), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        short = ours(idx[:, : ORIGINAL])
        long = ours(idx[:, : ORIGINAL + 1])[:, :ORIGINAL]
    assert (short - long).abs().max() > 1e-3


def test_unknown_rope_scaling_is_refused_in_one_line(tmp_path):
    import transformers

    config = transformers.LlamaConfig(**LLAMA_LIKE)
    model = transformers.LlamaForCausalLM._from_config(config)
    model.save_pretrained(tmp_path / "hf")
    path = tmp_path / "hf" / "config.json"
    import json

    data = json.loads(path.read_text())
    data.pop("rope_parameters", None)
    data["rope_scaling"] = {"rope_type": "dynamic", "factor": 2.0}
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"RoPE scaling 'dynamic' is not supported \(supported: linear, llama3, yarn, longrope\)"):
        convert_to_litgpt(tmp_path / "hf")


def test_longrope_config_checks_its_fields():
    with pytest.raises(ValueError, match="need attention_factor"):
        Config(n_embd=64, n_head=4, rope_adjustments={"short_factor": [1.0] * 2, "long_factor": [1.0] * 2, "original_max_seq_len": 4})
    with pytest.raises(ValueError, match="short_factor has 2 entries for 8"):
        Config(n_embd=64, n_head=4, rotary_percentage=1.0, rope_adjustments={
            "short_factor": [1.0] * 2, "long_factor": [1.0] * 8, "original_max_seq_len": 4, "attention_factor": 1.0})
    with pytest.raises(ValueError, match="name no known RoPE scaling"):
        Config(n_embd=64, n_head=4, rope_adjustments={"beta": 1.0})


@pytest.mark.parametrize("name", ["Phi-3.5-mini-instruct", "Phi-4-mini-instruct"])
def test_registry_name_takes_config_jsons_longrope(name, tmp_path, capsys):
    """LitGPT's registry entries leave LongRoPE out: through their names (the download path) config.json's scaling is kept."""
    from litgpt.convert.hf_config import config_to_hf
    from litgpt.convert.hf_to_lit import resolve_config
    from litgpt.convert.lit_to_hf import export_architecture

    entry = Config.from_name(name)
    assert entry.rope_adjustments is None
    hf = config_to_hf(entry, export_architecture(entry)[0])
    n = entry.rope_n_elem // 2
    hf.update(max_position_embeddings=131072, original_max_position_embeddings=4096,
              rope_scaling={"type": "longrope", "short_factor": [1.0] * n, "long_factor": [2.0] * n})
    config, _ = resolve_config(tmp_path / name, hf, None)
    assert config.name == name and config.rope_scaling == "longrope" and config.block_size == 131072
    assert config.rope_adjustments["original_max_seq_len"] == 4096
    assert config.rope_adjustments["attention_factor"] == pytest.approx((1 + math.log(32) / math.log(4096)) ** 0.5)
    assert "has no RoPE scaling; using config.json's (longrope)" in capsys.readouterr().err
