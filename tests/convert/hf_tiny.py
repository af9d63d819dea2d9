"""Tiny random Hugging Face models, one per architecture family, built with transformers on the spot."""

from typing import Any, Dict, Tuple

SMALL = dict(vocab_size=96, num_hidden_layers=2, max_position_embeddings=64, hidden_size=64, num_attention_heads=4)
LLAMA_LIKE = dict(SMALL, num_key_value_heads=2, intermediate_size=96)

# family -> (HF config class, HF model class, config kwargs, how to save: save_pretrained kwargs or {"bin_shards": n})
FAMILIES: Dict[str, Tuple[str, str, Dict[str, Any], Dict[str, Any]]] = {
    "pythia": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(SMALL, intermediate_size=128, rotary_pct=0.25), {"bin_shards": 1}),
    "llama-2": ("LlamaConfig", "LlamaForCausalLM", dict(LLAMA_LIKE, num_key_value_heads=4), {"max_shard_size": "40KB"}),
    "llama-3": (
        "LlamaConfig", "LlamaForCausalLM",
        dict(LLAMA_LIKE, head_dim=16, rope_theta=500000.0,
             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
        {},
    ),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(LLAMA_LIKE, sliding_window=4), {}),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", dict(LLAMA_LIKE, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2), {}),
    "phi-2": ("PhiConfig", "PhiForCausalLM", dict(SMALL, intermediate_size=128, partial_rotary_factor=0.5), {}),
    "phi-3": ("Phi3Config", "Phi3ForCausalLM", dict(LLAMA_LIKE, sliding_window=5, pad_token_id=0, bos_token_id=1, eos_token_id=2), {}),
    # LongRoPE: factors for head_dim 16 (8 frequencies), and with Phi-4-mini's partial rotary (12 dims, 6 frequencies)
    "phi-3-longrope": (
        "Phi3Config", "Phi3ForCausalLM",
        dict(LLAMA_LIKE, original_max_position_embeddings=16, pad_token_id=0, bos_token_id=1, eos_token_id=2,
             rope_scaling={"rope_type": "longrope", "short_factor": [1.0, 1.1, 1.2, 1.5, 2.0, 2.5, 3.0, 3.5],
                           "long_factor": [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0]}),
        {},
    ),
    "phi-4-mini": (
        "Phi3Config", "Phi3ForCausalLM",
        dict(LLAMA_LIKE, original_max_position_embeddings=16, partial_rotary_factor=0.75, tie_word_embeddings=True,
             pad_token_id=0, bos_token_id=1, eos_token_id=2,
             rope_scaling={"rope_type": "longrope", "short_factor": [1.0, 1.2, 1.6, 2.0, 2.4, 3.0],
                           "long_factor": [1.0, 2.0, 3.0, 5.0, 7.0, 9.0]}),
        {},
    ),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(LLAMA_LIKE, num_key_value_heads=1, head_dim=16), {}),
    "gemma-2": (
        "Gemma2Config", "Gemma2ForCausalLM",
        dict(LLAMA_LIKE, head_dim=16, sliding_window=4, query_pre_attn_scalar=12, attn_logit_softcapping=5.0, final_logit_softcapping=10.0),
        {},
    ),
    "gemma-3": (
        "Gemma3TextConfig", "Gemma3ForCausalLM",
        dict(LLAMA_LIKE, head_dim=16, sliding_window=4, query_pre_attn_scalar=16, layer_types=["sliding_attention", "full_attention"],
             rope_scaling={"rope_type": "linear", "factor": 8.0}, rope_theta=1_000_000.0, rope_local_base_freq=10_000.0),
        {},
    ),
    "qwen-2": ("Qwen2Config", "Qwen2ForCausalLM", dict(LLAMA_LIKE, tie_word_embeddings=True), {}),
    "qwen-3": ("Qwen3Config", "Qwen3ForCausalLM", dict(LLAMA_LIKE, head_dim=32), {}),
    "qwen-3-moe": (
        "Qwen3MoeConfig", "Qwen3MoeForCausalLM",
        dict(LLAMA_LIKE, head_dim=16, moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True),
        {},
    ),
    "olmo": ("OlmoConfig", "OlmoForCausalLM", dict(LLAMA_LIKE, pad_token_id=0, eos_token_id=1), {}),
    "olmo-2": ("Olmo2Config", "Olmo2ForCausalLM", dict(LLAMA_LIKE, pad_token_id=0, eos_token_id=1), {}),
    "falcon-7b": (
        "FalconConfig", "FalconForCausalLM",
        dict(SMALL, multi_query=True, new_decoder_architecture=False, parallel_attn=True, bos_token_id=1, eos_token_id=1),
        {"bin_shards": 3},
    ),
    "falcon-40b": (
        "FalconConfig", "FalconForCausalLM",
        dict(SMALL, new_decoder_architecture=True, num_kv_heads=2, bos_token_id=1, eos_token_id=1),
        {},
    ),
    "stablelm": (
        "StableLmConfig", "StableLmForCausalLM",
        dict(LLAMA_LIKE, num_key_value_heads=4, use_qkv_bias=True, partial_rotary_factor=0.25, bos_token_id=1, eos_token_id=1),
        {},
    ),
}


def randomize(model: Any, seed: int = 0) -> None:
    """Weights far from HF's near-zero init, so that a wrong mapping shows in the logits."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.dim() == 1 and name.endswith("weight"):  # norms
                param.copy_(1.0 + 0.1 * noise)
            else:
                param.copy_((0.1 if param.dim() == 1 else 0.2) * noise)


def build_hf_model(family: str, seed: int = 0) -> Any:
    import torch
    import transformers

    config_class, model_class, kwargs, _ = FAMILIES[family]
    config = getattr(transformers, config_class)(**kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)._from_config(config, attn_implementation="eager").eval()
    randomize(model, seed)
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    return model


def save(model: Any, path: Any, how: Dict[str, Any]) -> None:
    """save_pretrained, or, for {"bin_shards": n}, pytorch_model*.bin files as older checkpoints have them."""
    import json

    import torch
    from safetensors.torch import load_file

    shards = how.get("bin_shards")
    if shards is None:
        model.save_pretrained(path, **how)
        return
    # transformers 5 writes safetensors only: turn its file (with the names as stored on the Hub) into .bin files
    model.save_pretrained(path)
    state_dict = load_file(path / "model.safetensors")
    (path / "model.safetensors").unlink()
    if shards == 1:
        torch.save(state_dict, path / "pytorch_model.bin")
        return
    names, weight_map = list(state_dict), {}
    for i in range(shards):
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        torch.save({name: state_dict[name] for name in names[i::shards]}, path / file)
        weight_map.update(dict.fromkeys(names[i::shards], file))
    (path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
