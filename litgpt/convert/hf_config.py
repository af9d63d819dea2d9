"""config.json <-> Config, the same way for every architecture, driven by its table in `architectures.py`.

config.json is read in both the transformers 4 layout (`rope_theta`, `rope_scaling`) and the transformers 5 one
(`rope_parameters`), and written in the first, which both versions load.
"""

import math
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Tuple

from litgpt.checkpoint import CheckpointError
from litgpt.config import Config
from litgpt.convert.architectures import Architecture

# ---------------------------------------------------------------------------------------------------------------
# config.json -> Config

ACTIVATIONS = {  # name -> (our MLP family, gelu_approximate)
    "silu": ("silu", None), "swish": ("silu", None),
    # the first name of each meaning is the one written
    "gelu": ("gelu", "none"), "gelu_pytorch_tanh": ("gelu", "tanh"), "gelu_new": ("gelu", "tanh"), "gelu_fast": ("gelu", "tanh"),
}
ROPE_KEYS = ("rope_parameters", "rope_scaling", "rope_theta", "rotary_emb_base", "rotary_pct", "partial_rotary_factor", "rope_local_base_freq")
# keys of a multimodal config.json's top level that also concern its language model
SHARED_TOP_LEVEL_KEYS = ("tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype", "dtype")
WINDOW_KEYS = ("sliding_window", "layer_types", "sliding_window_pattern", "_sliding_window_pattern", "use_sliding_window", "max_window_layers")


def text_part(hf_config: Dict[str, Any], arch: Architecture) -> Dict[str, Any]:
    """The language model's part of a config.json (itself, or its `text_config` merged over the top level)."""
    if not arch.text_config:
        return dict(hf_config)
    top = {k: v for k, v in hf_config.items() if k in SHARED_TOP_LEVEL_KEYS}
    return {**top, **(hf_config.get("text_config") or {})}


def config_from_hf(hf_json: Dict[str, Any], arch: Architecture, **fields: Any) -> Config:
    """Derive our Config from a config.json of the class `arch`; `fields` (name, hf_config) are passed through."""
    hf = {**arch.hf_defaults, **_flatten_rope(text_part(hf_json, arch))}
    for key, needed in arch.requires.items():
        if hf.get(key, needed) != needed:
            raise CheckpointError(f"{arch.hf_class} with {key}={hf[key]!r} is not supported (needs {needed!r})")
    values = dict(arch.config)
    for name, keys in arch.keys.items():
        value = _first(hf, keys)
        if value is not None:
            values[name] = value
    values["vocab_size"] = values["padded_vocab_size"]
    if arch.read is not None:
        values.update(arch.read(hf))
    values["rope_adjustments"] = _rope_adjustments(hf.get("rope_scaling"), hf)
    values.update(_windows(hf, arch, values["n_layer"], values.get("rope_local_base_freq")))
    values.update(_activation(hf, arch, values["mlp_class_name"]))
    try:
        return Config(**{**values, **fields})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"config.json of {arch.hf_class} gives an invalid config: {e}") from None


def _first(hf: Dict[str, Any], keys: str) -> Any:
    for key in keys.split("|"):
        if hf.get(key) is not None:
            return hf[key]
    return None


def _flatten_rope(hf: Dict[str, Any]) -> Dict[str, Any]:
    """transformers 5's `rope_parameters` spelled as transformers 4's keys (`rope_theta`, `rope_scaling`, ...)."""
    params = hf.get("rope_parameters")
    if not params:
        return hf
    hf = dict(hf)
    per_layer_type = "full_attention" in params or "sliding_attention" in params
    rope = dict(params.get("full_attention") or {}) if per_layer_type else dict(params)
    local = params.get("sliding_attention") if per_layer_type else None
    if "rope_theta" in rope:
        hf["rope_theta"] = rope.pop("rope_theta")
    if "partial_rotary_factor" in rope:
        hf["partial_rotary_factor"] = rope.pop("partial_rotary_factor")
    if local:
        if (local.get("rope_type") or "default") != "default":
            raise CheckpointError(f"RoPE scaling on sliding-window layers ({local['rope_type']}) is not supported")
        hf["rope_local_base_freq"] = local.get("rope_theta", hf.get("rope_local_base_freq"))
    if not hf.get("rope_scaling"):  # a transformers 4 `rope_scaling` next to it wins, as in transformers 5
        hf["rope_scaling"] = rope if (rope.get("rope_type") or rope.get("type") or "default") != "default" else None
    return hf


def _rope_adjustments(scaling: Optional[Dict[str, Any]], hf: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Our `rope_adjustments` for an HF `rope_scaling` entry."""
    if not scaling:
        return None
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    if kind == "default":
        return None
    factor = scaling.get("factor")
    original = scaling.get("original_max_position_embeddings") or hf.get("original_max_position_embeddings") or hf.get("max_position_embeddings")
    if kind == "linear":
        return {"factor": factor}
    if kind == "llama3":
        return {
            "factor": factor, "low_freq_factor": scaling["low_freq_factor"], "high_freq_factor": scaling["high_freq_factor"],
            "original_max_seq_len": original,
        }
    if kind == "yarn":
        if scaling.get("mscale_all_dim"):
            # DeepSeek's variant, which also rescales the attention scores; our model reserves it for latent attention
            raise CheckpointError("YaRN with mscale_all_dim is not supported")
        # HF's cos/sin amplitude: attention_factor if given, else 0.1 ln(factor) + 1; ours is 0.1 mscale ln(factor) + 1
        amplitude = scaling.get("attention_factor")
        mscale = 1.0 if amplitude is None or factor <= 1 else (amplitude - 1) / (0.1 * math.log(factor))
        adjustments = {
            "factor": factor, "original_max_seq_len": original, "beta_fast": scaling.get("beta_fast") or 32,
            "beta_slow": scaling.get("beta_slow") or 1, "mscale": mscale,
        }
        if "truncate" in scaling:
            adjustments["truncate"] = scaling["truncate"]
        return adjustments
    if kind == "longrope":
        return _longrope(scaling, hf, original)
    raise CheckpointError(f"RoPE scaling {kind!r} is not supported (supported: linear, llama3, yarn, longrope)")


def _longrope(scaling: Dict[str, Any], hf: Dict[str, Any], original: int) -> Dict[str, Any]:
    """LongRoPE (Phi-3, Phi-4-mini): per-frequency factors, and cos/sin scaled by an attention factor that transformers
    derives from max_position_embeddings / original_max_position_embeddings when config.json does not state it."""
    if not (scaling.get("short_factor") and scaling.get("long_factor")):
        raise CheckpointError("rope_scaling of type longrope in config.json: LongRoPE needs short_factor and long_factor")
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        factor = scaling.get("factor") or hf["max_position_embeddings"] / original
        attention_factor = 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original))
    return {
        "short_factor": [float(f) for f in scaling["short_factor"]], "long_factor": [float(f) for f in scaling["long_factor"]],
        "original_max_seq_len": original, "attention_factor": attention_factor,
    }


def _windows(hf: Dict[str, Any], arch: Architecture, n_layer: int, local_base: Optional[float]) -> Dict[str, Any]:
    """Sliding-window size and layers, and which layers use the local RoPE base (Gemma 3: the sliding ones)."""
    window = hf.get("sliding_window") if arch.window and hf.get("use_sliding_window", True) else None
    flags = [0] * n_layer
    if window is not None:
        pattern = hf.get("sliding_window_pattern") or hf.get("_sliding_window_pattern")
        if hf.get("layer_types"):
            flags = [int(kind == "sliding_attention") for kind in hf["layer_types"]]
        elif pattern:  # every pattern-th layer is global
            flags = [int((i + 1) % pattern != 0) for i in range(n_layer)]
        elif hf.get("use_sliding_window") and hf.get("max_window_layers") is not None:
            flags = [int(i >= hf["max_window_layers"]) for i in range(n_layer)]
        else:
            flags = [1] * n_layer
    if not any(flags):
        window = None
    values: Dict[str, Any] = {"sliding_window_size": window, "sliding_window_indices": flags if window else None}
    if local_base is not None:
        values["rope_indices"] = flags
    return values


def _activation(hf: Dict[str, Any], arch: Architecture, mlp_class_name: str) -> Dict[str, Any]:
    name = _first(hf, arch.act) or _first(hf, "hidden_act|hidden_activation|activation")
    name = arch.act_aliases.get(name, name)
    family, approximate = ACTIVATIONS.get(name, (None, None))
    wanted = "silu" if mlp_class_name in ("LLaMAMLP", "LLaMAMoE") else "gelu"
    if family != wanted:
        raise CheckpointError(f"{arch.hf_class} with activation {name!r} is not supported (needs {wanted})")
    return {} if approximate is None else {"gelu_approximate": approximate}


# ---------------------------------------------------------------------------------------------------------------
# Config -> config.json


def config_to_hf(config: Config, arch: Architecture, base: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A config.json for `config` as the class `arch`, over `base` (the source folder's config.json, if any)."""
    hf = {k: v for k, v in (base or {}).items() if k not in ROPE_KEYS + WINDOW_KEYS}
    for key in ("_name_or_path", "transformers_version", "auto_map", "quantization_config", "torch_dtype", "dtype"):
        hf.pop(key, None)
    hf.update(architectures=[arch.hf_class], model_type=arch.model_type)
    for name, keys in arch.keys.items():
        hf[keys.split("|")[0]] = getattr(config, name)
    hf["rope_scaling"] = _rope_scaling(config)
    if config.rope_scaling == "longrope":  # transformers 4's Phi-3 reads it from the top level
        hf["original_max_position_embeddings"] = config.rope_adjustments["original_max_seq_len"]
    act_key = arch.act.split("|")[0]
    source_act = hf.get(act_key)
    if ACTIVATIONS.get(arch.act_aliases.get(source_act, source_act)) != _our_activation(config):
        hf[act_key] = _activation_name(config)  # else the source's spelling stays, as it means the same
    if arch.window:
        hf.update(_window_keys(config, arch))
    for key, value in arch.requires.items():
        hf[key] = value
    if arch.write is not None:
        hf.update(arch.write(config))
    return hf


def _our_activation(config: Config) -> Tuple[str, Optional[str]]:
    if config.mlp_class_name in ("LLaMAMLP", "LLaMAMoE"):
        return ("silu", None)
    return ("gelu", config.gelu_approximate)


def _activation_name(config: Config) -> str:
    return next(name for name, meaning in ACTIVATIONS.items() if meaning == _our_activation(config))


def _rope_scaling(config: Config) -> Optional[Dict[str, Any]]:
    adj = dict(config.rope_adjustments or {})
    if config.rope_condense_ratio != 1:  # position interpolation is linear scaling by another name
        if adj:
            raise CheckpointError("rope_condense_ratio together with rope_adjustments has no Hugging Face equivalent")
        adj = {"factor": config.rope_condense_ratio}
    if not adj:
        return None
    if "long_factor" in adj:
        return {
            "rope_type": "longrope", "short_factor": adj["short_factor"], "long_factor": adj["long_factor"],
            "original_max_position_embeddings": adj["original_max_seq_len"], "attention_factor": adj["attention_factor"],
        }
    if "low_freq_factor" in adj:
        return {
            "rope_type": "llama3", "factor": adj["factor"], "low_freq_factor": adj["low_freq_factor"],
            "high_freq_factor": adj["high_freq_factor"], "original_max_position_embeddings": adj["original_max_seq_len"],
        }
    if "beta_fast" in adj or "beta_slow" in adj:
        if adj.get("mscale_all_dim"):
            raise CheckpointError("YaRN with mscale_all_dim has no Hugging Face equivalent for this architecture")
        scaling = {
            "rope_type": "yarn", "factor": adj["factor"], "original_max_position_embeddings": adj["original_max_seq_len"],
            "beta_fast": adj["beta_fast"], "beta_slow": adj["beta_slow"],
        }
        mscale = adj.get("mscale") or 1.0
        if mscale != 1.0 and adj["factor"] > 1:
            scaling["attention_factor"] = 0.1 * mscale * math.log(adj["factor"]) + 1.0
        if "truncate" in adj:
            scaling["truncate"] = adj["truncate"]
        return scaling
    if set(adj) == {"factor"}:
        return {"rope_type": "linear", "factor": adj["factor"]}
    raise CheckpointError(f"rope_adjustments {adj} have no Hugging Face equivalent")


def _window_keys(config: Config, arch: Architecture) -> Dict[str, Any]:
    size = config.sliding_window_size
    flags = list(config.sliding_window_indices) if size is not None else [0] * config.n_layer
    if arch.window == "all":
        return {"sliding_window": size if any(flags) else None}
    values: Dict[str, Any] = {
        "sliding_window": size, "layer_types": ["sliding_attention" if flag else "full_attention" for flag in flags],
    }
    if "use_sliding_window" in arch.hf_defaults:
        values.update(use_sliding_window=size is not None and any(flags), max_window_layers=config.n_layer)
    return values


# ---------------------------------------------------------------------------------------------------------------
# comparing configs by what they compute


def behaviour(config: Config) -> Dict[str, Any]:
    """The Config fields that change what the model computes, in one canonical spelling each."""
    c = asdict(config)
    moe = c["mlp_class_name"] == "LLaMAMoE"
    window = c["sliding_window_size"] if c["sliding_window_size"] is not None and any(c["sliding_window_indices"]) else None
    adj = dict(c["rope_adjustments"] or {})
    if c["rope_condense_ratio"] != 1 and not adj:
        adj = {"factor": c["rope_condense_ratio"]}
    if "beta_fast" in adj:
        adj["mscale"] = adj.get("mscale") or 1.0
    out = {
        name: c[name]
        for name in (
            "n_layer", "n_embd", "n_head", "head_size", "n_query_groups", "padded_vocab_size", "block_size",
            "norm_class_name", "norm_eps", "norm_qk", "post_attention_norm", "post_mlp_norm", "parallel_residual",
            "attention_logit_softcapping", "rope_base", "mlp_class_name", "n_expert", "n_expert_per_token",
            "scale_embeddings", "lm_head_bias", "final_logit_softcapping", "norm_1", "norm_2", "bias",
            "latent_attention", "n_shared_expert", "n_expert_groups", "first_k_dense_replace", "rope_interleave",
        )
    }
    out.update(
        shared_attention_norm=c["parallel_residual"] and c["shared_attention_norm"],
        norm_qk_type=c["norm_qk_type"] if c["norm_qk"] else None,
        attn_bias=c["bias"] or c["attn_bias"],
        attention_scores_scalar=c["attention_scores_scalar"] or c["head_size"],
        sliding_window=(window, tuple(c["sliding_window_indices"])) if window else None,
        rope_n_elem=config.rope_n_elem,
        rope_adjustments=adj or None,
        rope_local=(c["rope_local_base_freq"], tuple(c["rope_indices"])) if c["rope_local_base_freq"] is not None and any(c["rope_indices"]) else None,
        intermediate_size=(c["moe_intermediate_size"] or c["intermediate_size"]) if moe else c["intermediate_size"],
        gelu_approximate=None if c["mlp_class_name"] in ("LLaMAMLP", "LLaMAMoE") else c["gelu_approximate"],
        norm_unit_offset=c["norm_unit_offset"] if c["norm_class_name"] == "RMSNorm" else None,
        norm_affine=c["norm_affine"] if c["norm_class_name"] == "LayerNorm" else None,
    )
    return out


def differences(a: Config, b: Config, names: Optional[Tuple[str, ...]] = None) -> List[str]:
    """`field: a != b` for each behaviour field (or each of `names`) where the two configs differ."""
    x, y = behaviour(a), behaviour(b)
    return [f"{k}: {x[k]!r} != {y[k]!r}" for k in (names or tuple(x)) if x[k] != y[k]]


SHAPE_FIELDS = ("n_layer", "n_embd", "n_head", "head_size", "n_query_groups", "padded_vocab_size", "intermediate_size",
                "n_expert", "mlp_class_name", "norm_class_name", "bias", "attn_bias", "lm_head_bias")
