"""HF -> LitGPT -> HF on a tiny random model of every family: the logits must match transformers' at each step."""

import shutil

import pytest
import torch

from litgpt.checkpoint import load_model, read_json
from litgpt.config import Config
from litgpt.convert.hf_to_lit import convert_to_litgpt
from litgpt.convert.lit_to_hf import convert_from_litgpt
from hf_tiny import FAMILIES, LLAMA_LIKE, randomize

TOLERANCE = 1e-4


def hf_logits(model, idx):
    with torch.no_grad():
        return model(idx).logits


def load_hf(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()


def tokens(vocab: int = 90, T: int = 16):
    # 16 positions: past Mistral's, Gemma's and Phi-3's tiny sliding windows (4-5) and Llama 3's original length
    return torch.randint(0, vocab, (2, T), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_parity_both_ways(family, hf_checkpoint, tmp_path, parity_report):
    hf_dir, hf_model = hf_checkpoint(family)
    idx = tokens()
    expected = hf_logits(hf_model, idx)

    convert_to_litgpt(hf_dir)  # no registry name: the config is derived from config.json
    assert not list(hf_dir.glob("*.tmp"))
    ours = load_model(hf_dir, precision="32-true")
    with torch.no_grad():
        got = ours(idx)
    to_lit = (got - expected).abs().max().item()

    convert_from_litgpt(hf_dir, tmp_path / "back")
    back = load_hf(tmp_path / "back")
    assert type(back).__name__ == type(hf_model).__name__  # the source config.json's class is kept
    to_hf = (hf_logits(back, idx) - expected).abs().max().item()

    # without the source config.json the class is picked from the Config alone
    lit_only = tmp_path / "lit-only"
    shutil.copytree(hf_dir, lit_only, ignore=shutil.ignore_patterns("config.json", "*.safetensors*", "*.bin*"))
    convert_from_litgpt(lit_only, tmp_path / "back-rule")
    to_hf_rule = (hf_logits(load_hf(tmp_path / "back-rule"), idx) - expected).abs().max().item()

    parity_report[family] = {"class": type(hf_model).__name__, "to_lit": to_lit, "to_hf": to_hf, "to_hf_rule": to_hf_rule}
    print(f"\n{family}: HF->lit {to_lit:.2e}, lit->HF {to_hf:.2e}, lit->HF (no source config.json) {to_hf_rule:.2e}")
    assert to_lit < TOLERANCE
    assert to_hf < TOLERANCE
    assert to_hf_rule < TOLERANCE


def test_sharded_output_loads(hf_checkpoint, tmp_path):
    hf_dir, hf_model = hf_checkpoint("llama-3")
    convert_to_litgpt(hf_dir, dtype="bfloat16")
    assert {t.dtype for t in torch.load(hf_dir / "lit_model.pth", mmap=True, weights_only=True).values()} == {torch.bfloat16}
    convert_from_litgpt(hf_dir, tmp_path / "out", max_shard_size="20KB")
    index = read_json(tmp_path / "out" / "model.safetensors.index.json")
    shards = set(index["weight_map"].values())
    assert len(shards) > 2 and all((tmp_path / "out" / name).is_file() for name in shards)
    assert read_json(tmp_path / "out" / "config.json")["torch_dtype"] == "bfloat16"
    back = load_hf(tmp_path / "out").float()
    assert (hf_logits(back, tokens()) - hf_logits(hf_model, tokens())).abs().max() < 0.1  # bf16 rounding

    convert_from_litgpt(hf_dir, tmp_path / "out")  # again, unsharded: the old shards and index go
    assert sorted(p.name for p in (tmp_path / "out").glob("model*")) == ["model.pth", "model.safetensors"]


def test_gemma_3_multimodal_text_part(tmp_path):
    """Gemma3ForConditionalGeneration: the language model is converted, the vision tower left out."""
    import transformers

    text = FAMILIES["gemma-3"][2]
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14)
    config = transformers.Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_index=95, boi_token_index=93, eoi_token_index=94
    )
    model = transformers.Gemma3ForConditionalGeneration._from_config(config, attn_implementation="eager").eval()
    randomize(model)
    model.save_pretrained(tmp_path / "hf")
    idx = tokens(vocab=90)
    expected = hf_logits(model, idx)

    convert_to_litgpt(tmp_path / "hf")
    with torch.no_grad():
        got = load_model(tmp_path / "hf", precision="32-true")(idx)
    assert (got - expected).abs().max() < TOLERANCE

    convert_from_litgpt(tmp_path / "hf", tmp_path / "back")
    back = load_hf(tmp_path / "back")
    assert type(back).__name__ == "Gemma3ForCausalLM"
    assert (hf_logits(back, idx) - expected).abs().max() < TOLERANCE


def test_qwen_3_yarn(tmp_path):
    import transformers

    kwargs = dict(LLAMA_LIKE, head_dim=32, rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16})
    model = transformers.Qwen3ForCausalLM._from_config(transformers.Qwen3Config(**kwargs), attn_implementation="eager").eval()
    randomize(model)
    model.save_pretrained(tmp_path / "hf")
    convert_to_litgpt(tmp_path / "hf")
    assert Config.from_file(tmp_path / "hf" / "model_config.yaml").rope_adjustments["beta_fast"] == 32
    with torch.no_grad():
        got = load_model(tmp_path / "hf", precision="32-true")(tokens())
    assert (got - hf_logits(model, tokens())).abs().max() < TOLERANCE
