"""One table per Hugging Face architecture: how its config.json and its weight names map to ours, both ways.

An `Architecture` is data: the Config fields every model of the HF class shares, the config.json keys that
map one to one onto Config fields, and the HF module names that map onto ours. What is not one to one
(RoPE scaling, sliding-window layers, the activation) is read and written for every architecture alike by
`hf_config.py`; `weights.py` renames and reshapes the tensors with these tables.

Module names are templates: `{l}` stands for the layer index and `{e}` for the expert index.
"""

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Optional, Tuple

from litgpt.checkpoint import CheckpointError
from litgpt.config import Config

@dataclass(frozen=True)
class Architecture:
    """How one Hugging Face model class (config.json's `architectures[0]`) maps onto our Config and weights."""

    hf_class: str
    model_type: str
    config: Dict[str, Any]  # Config fields that every model of this class has
    keys: Dict[str, str]  # Config field -> config.json key; `a|b` reads a, else b, and writes a
    modules: Dict[str, str]  # HF module -> our module, copied as is
    qkv: Tuple[str, ...]  # the HF attention input projection: q, k, v modules, or one fused module
    qkv_layout: str = "split"  # split (q, k, v) | fused ([q|k|v], as ours) | interleaved ([q.. k v] per group)
    gate_up: Optional[str] = None  # one HF module holding [gate | up], which are our fc_1 and fc_2
    variants: Tuple[Tuple[Dict[str, Any], Dict[str, str]], ...] = ()  # (Config values, modules they add)
    hf_defaults: Dict[str, Any] = field(default_factory=dict)  # what transformers assumes for absent keys
    requires: Dict[str, Any] = field(default_factory=dict)  # config.json values our model needs to match HF
    act: str = "hidden_act"  # the activation's config.json key(s)
    act_aliases: Dict[str, str] = field(default_factory=dict)  # activation names this class reads as others
    window: str = ""  # how config.json states sliding windows: "" none, "all" layers, "per_layer" (layer_types)
    read: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None  # Config fields from several keys
    write: Optional[Callable[[Config], Dict[str, Any]]] = None  # and back
    text_config: bool = False  # the language model's config sits under `text_config` (multimodal classes)
    prefixes: Dict[str, str] = field(default_factory=dict)  # HF key prefixes renamed before the lookup
    ignore: Tuple[str, ...] = ()  # HF key prefixes of weights we do not convert (vision towers)
    export_as: str = ""  # the class convert_from_litgpt writes for a checkpoint of this one, if another


# ---------------------------------------------------------------------------------------------------------------
# the tables

COMMON_KEYS = {
    "n_embd": "hidden_size|n_embed",
    "n_layer": "num_hidden_layers|n_layer",
    "n_head": "num_attention_heads|n_head",
    "padded_vocab_size": "vocab_size",
    "block_size": "max_position_embeddings",
    "rope_base": "rope_theta",
}
LLAMA_KEYS = {
    **COMMON_KEYS,
    "n_query_groups": "num_key_value_heads",
    "head_size": "head_dim",
    "intermediate_size": "intermediate_size",
    "norm_eps": "rms_norm_eps",
}
LLAMA_CONFIG = dict(
    norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", parallel_residual=False, bias=False, rotary_percentage=1.0,
    norm_unit_offset=False, norm_affine=True,
)
LLAMA_MODULES = {
    "model.embed_tokens": "transformer.wte",
    "model.layers.{l}.input_layernorm": "transformer.h.{l}.norm_1",
    "model.layers.{l}.self_attn.o_proj": "transformer.h.{l}.attn.proj",
    "model.layers.{l}.post_attention_layernorm": "transformer.h.{l}.norm_2",
    "model.layers.{l}.mlp.gate_proj": "transformer.h.{l}.mlp.fc_1",
    "model.layers.{l}.mlp.up_proj": "transformer.h.{l}.mlp.fc_2",
    "model.layers.{l}.mlp.down_proj": "transformer.h.{l}.mlp.proj",
    "model.norm": "transformer.ln_f",
    "lm_head": "lm_head",
}
LLAMA_QKV = ("model.layers.{l}.self_attn.q_proj", "model.layers.{l}.self_attn.k_proj", "model.layers.{l}.self_attn.v_proj")
LLAMA_MLP = ("model.layers.{l}.mlp.gate_proj", "model.layers.{l}.mlp.up_proj", "model.layers.{l}.mlp.down_proj")
QK_NORM = {"model.layers.{l}.self_attn.q_norm": "transformer.h.{l}.attn.norm_q", "model.layers.{l}.self_attn.k_norm": "transformer.h.{l}.attn.norm_k"}
GEMMA_NORMS = {  # Gemma 2 and 3 normalise before and after both attention and MLP
    "model.layers.{l}.post_attention_layernorm": "transformer.h.{l}.post_attention_norm",
    "model.layers.{l}.pre_feedforward_layernorm": "transformer.h.{l}.norm_2",
    "model.layers.{l}.post_feedforward_layernorm": "transformer.h.{l}.post_mlp_norm",
}
GEMMA_CONFIG = dict(
    LLAMA_CONFIG, mlp_class_name="GemmaMLP", scale_embeddings=True, norm_unit_offset=True, gelu_approximate="tanh"
)
GEMMA_SOFTCAP_KEYS = {
    "attention_scores_scalar": "query_pre_attn_scalar",
    "attention_logit_softcapping": "attn_logit_softcapping",
    "final_logit_softcapping": "final_logit_softcapping",
}


def _without(modules: Dict[str, str], *names: str) -> Dict[str, str]:
    return {k: v for k, v in modules.items() if k not in names}


def _experts(gate: str, fc_1: str, fc_2: str, proj: str) -> Dict[str, str]:
    """The router and expert MLPs of a mixture-of-experts block."""
    ours = "transformer.h.{l}.mlp"
    return {gate: f"{ours}.gate", fc_1: f"{ours}.experts.{{e}}.fc_1", fc_2: f"{ours}.experts.{{e}}.fc_2", proj: f"{ours}.experts.{{e}}.proj"}


def _llama_biases(hf: Dict[str, Any]) -> Dict[str, Any]:
    if bool(hf.get("attention_bias")) != bool(hf.get("mlp_bias")):
        # HF's attention_bias covers o_proj too, our attn_bias only the qkv projection
        raise CheckpointError("LlamaForCausalLM with attention_bias != mlp_bias is not supported")
    return {"bias": bool(hf.get("mlp_bias")), "attn_bias": False}


def _falcon_read(hf: Dict[str, Any]) -> Dict[str, Any]:
    new = bool(hf.get("new_decoder_architecture"))
    parallel = new or bool(hf.get("parallel_attn", True))
    heads = hf.get("num_attention_heads") or hf.get("n_head")
    groups = hf.get("num_kv_heads") or hf.get("n_head_kv") or heads
    if not new:  # the 7B layout: one K/V head (multi_query) or one per query head
        groups = 1 if hf.get("multi_query", True) else heads
    two_norms = new and (hf.get("num_ln_in_parallel_attn") or 2) == 2
    return {"n_query_groups": groups, "parallel_residual": parallel, "shared_attention_norm": parallel and not two_norms}


def _falcon_write(c: Config) -> Dict[str, Any]:
    if not c.parallel_residual:
        return {"new_decoder_architecture": False, "parallel_attn": False, "multi_query": c.n_query_groups == 1, "num_kv_heads": c.n_query_groups}
    if c.shared_attention_norm and c.n_query_groups in (1, c.n_head):
        return {"new_decoder_architecture": False, "parallel_attn": True, "multi_query": c.n_query_groups == 1, "num_kv_heads": c.n_query_groups}
    return {
        "new_decoder_architecture": True, "parallel_attn": True, "num_kv_heads": c.n_query_groups,
        "num_ln_in_parallel_attn": 1 if c.shared_attention_norm else 2,
    }


def _stablelm_read(hf: Dict[str, Any]) -> Dict[str, Any]:
    # StableLM's parallel variant feeds attention and MLP from the same norm
    return {"shared_attention_norm": bool(hf.get("use_parallel_residual"))}


ARCHITECTURES: Dict[str, Architecture] = {}


def _register(*archs: Architecture) -> None:
    for arch in archs:
        ARCHITECTURES[arch.hf_class] = arch


_register(
    Architecture(
        "LlamaForCausalLM", "llama", LLAMA_CONFIG, {**LLAMA_KEYS}, LLAMA_MODULES, LLAMA_QKV,
        hf_defaults={"tie_word_embeddings": False}, read=_llama_biases,
        write=lambda c: {"attention_bias": c.bias, "mlp_bias": c.bias},
    ),
    Architecture(
        "MistralForCausalLM", "mistral", LLAMA_CONFIG, LLAMA_KEYS, LLAMA_MODULES, LLAMA_QKV,
        hf_defaults={"tie_word_embeddings": False, "sliding_window": 4096}, window="all",
    ),
    Architecture(
        "MixtralForCausalLM", "mixtral", dict(LLAMA_CONFIG, mlp_class_name="LLaMAMoE"),
        {**LLAMA_KEYS, "n_expert": "num_local_experts", "n_expert_per_token": "num_experts_per_tok"},
        {
            **_without(LLAMA_MODULES, *LLAMA_MLP),
            **_experts(
                "model.layers.{l}.block_sparse_moe.gate", "model.layers.{l}.block_sparse_moe.experts.{e}.w1",
                "model.layers.{l}.block_sparse_moe.experts.{e}.w3", "model.layers.{l}.block_sparse_moe.experts.{e}.w2",
            ),
        },
        LLAMA_QKV,
        hf_defaults={"tie_word_embeddings": False, "sliding_window": None}, window="all",
        write=lambda c: {"intermediate_size": c.moe_intermediate_size or c.intermediate_size},
    ),
    Architecture(
        "Qwen2ForCausalLM", "qwen2", dict(LLAMA_CONFIG, attn_bias=True), LLAMA_KEYS, LLAMA_MODULES, LLAMA_QKV,
        hf_defaults={"tie_word_embeddings": False, "use_sliding_window": False, "sliding_window": None}, window="per_layer",
    ),
    Architecture(
        "Qwen3ForCausalLM", "qwen3", dict(LLAMA_CONFIG, norm_qk=True), {**LLAMA_KEYS, "attn_bias": "attention_bias"},
        {**LLAMA_MODULES, **QK_NORM}, LLAMA_QKV,
        hf_defaults={"tie_word_embeddings": False, "use_sliding_window": False, "sliding_window": None}, window="per_layer",
    ),
    Architecture(
        "Qwen3MoeForCausalLM", "qwen3_moe", dict(LLAMA_CONFIG, norm_qk=True, mlp_class_name="LLaMAMoE"),
        {
            **LLAMA_KEYS, "attn_bias": "attention_bias", "n_expert": "num_experts|num_local_experts",
            "n_expert_per_token": "num_experts_per_tok", "moe_intermediate_size": "moe_intermediate_size",
        },
        {
            **_without(LLAMA_MODULES, *LLAMA_MLP), **QK_NORM,
            **_experts(
                "model.layers.{l}.mlp.gate", "model.layers.{l}.mlp.experts.{e}.gate_proj",
                "model.layers.{l}.mlp.experts.{e}.up_proj", "model.layers.{l}.mlp.experts.{e}.down_proj",
            ),
        },
        LLAMA_QKV,
        hf_defaults={"tie_word_embeddings": False, "use_sliding_window": False, "sliding_window": None, "norm_topk_prob": True,
                     "decoder_sparse_step": 1, "mlp_only_layers": []},
        # our router renormalises the top-k weights, and every layer is sparse
        requires={"norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": []}, window="per_layer",
    ),
    Architecture(
        "GemmaForCausalLM", "gemma", GEMMA_CONFIG, LLAMA_KEYS, LLAMA_MODULES, LLAMA_QKV,
        # Gemma 1 configs say "gelu" and mean the tanh approximation; transformers reads them so, and so do we
        hf_defaults={"tie_word_embeddings": True, "hidden_act": "gelu_pytorch_tanh"}, act="hidden_activation|hidden_act",
        act_aliases={"gelu": "gelu_pytorch_tanh"},
    ),
    Architecture(
        "Gemma2ForCausalLM", "gemma2", dict(GEMMA_CONFIG, post_attention_norm=True, post_mlp_norm=True),
        {**LLAMA_KEYS, **GEMMA_SOFTCAP_KEYS}, {**LLAMA_MODULES, **GEMMA_NORMS}, LLAMA_QKV,
        hf_defaults={"tie_word_embeddings": True, "sliding_window_pattern": 2, "hidden_activation": "gelu_pytorch_tanh"},
        act="hidden_activation|hidden_act", window="per_layer",
    ),
    Architecture(
        "Gemma3ForCausalLM", "gemma3_text", dict(GEMMA_CONFIG, post_attention_norm=True, post_mlp_norm=True, norm_qk=True),
        {**LLAMA_KEYS, **GEMMA_SOFTCAP_KEYS, "rope_local_base_freq": "rope_local_base_freq"},
        {**LLAMA_MODULES, **GEMMA_NORMS, **QK_NORM}, LLAMA_QKV,
        hf_defaults={
            "tie_word_embeddings": True, "sliding_window_pattern": 6, "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
            "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 256,
        },
        act="hidden_activation|hidden_act", window="per_layer",
    ),
    Architecture(
        "PhiForCausalLM", "phi",
        dict(norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP", parallel_residual=True, shared_attention_norm=True,
             bias=True, lm_head_bias=True, norm_unit_offset=False, norm_affine=True),
        {**COMMON_KEYS, "n_query_groups": "num_key_value_heads", "intermediate_size": "intermediate_size",
         "norm_eps": "layer_norm_eps", "rotary_percentage": "partial_rotary_factor"},
        {
            "model.embed_tokens": "transformer.wte",
            "model.layers.{l}.input_layernorm": "transformer.h.{l}.norm_1",
            "model.layers.{l}.self_attn.dense": "transformer.h.{l}.attn.proj",
            "model.layers.{l}.mlp.fc1": "transformer.h.{l}.mlp.fc",
            "model.layers.{l}.mlp.fc2": "transformer.h.{l}.mlp.proj",
            "model.final_layernorm": "transformer.ln_f",
            "lm_head": "lm_head",
        },
        LLAMA_QKV,
        hf_defaults={"tie_word_embeddings": False, "partial_rotary_factor": 0.5, "qk_layernorm": False},
        requires={"qk_layernorm": False},
    ),
    Architecture(
        "Phi3ForCausalLM", "phi3", LLAMA_CONFIG, {**LLAMA_KEYS, "rotary_percentage": "partial_rotary_factor"},
        _without(LLAMA_MODULES, "model.layers.{l}.mlp.gate_proj", "model.layers.{l}.mlp.up_proj"),
        ("model.layers.{l}.self_attn.qkv_proj",), qkv_layout="fused", gate_up="model.layers.{l}.mlp.gate_up_proj",
        hf_defaults={"tie_word_embeddings": False, "sliding_window": None}, window="all",
    ),
    Architecture(
        "GPTNeoXForCausalLM", "gpt_neox",
        dict(norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP", bias=True, norm_unit_offset=False, norm_affine=True),
        {**COMMON_KEYS, "rope_base": "rotary_emb_base|rope_theta", "intermediate_size": "intermediate_size",
         "norm_eps": "layer_norm_eps", "rotary_percentage": "rotary_pct|partial_rotary_factor",
         "parallel_residual": "use_parallel_residual"},
        {
            "gpt_neox.embed_in": "transformer.wte",
            "gpt_neox.layers.{l}.input_layernorm": "transformer.h.{l}.norm_1",
            "gpt_neox.layers.{l}.attention.dense": "transformer.h.{l}.attn.proj",
            "gpt_neox.layers.{l}.post_attention_layernorm": "transformer.h.{l}.norm_2",
            "gpt_neox.layers.{l}.mlp.dense_h_to_4h": "transformer.h.{l}.mlp.fc",
            "gpt_neox.layers.{l}.mlp.dense_4h_to_h": "transformer.h.{l}.mlp.proj",
            "gpt_neox.final_layer_norm": "transformer.ln_f",
            "embed_out": "lm_head",
        },
        ("gpt_neox.layers.{l}.attention.query_key_value",), qkv_layout="interleaved",
        hf_defaults={"tie_word_embeddings": False, "rotary_pct": 0.25, "use_parallel_residual": True, "attention_bias": True,
                     "hidden_act": "gelu"},
        requires={"attention_bias": True},
        prefixes={"lm_head.": "embed_out."},  # transformers 5's name for the output layer
    ),
    Architecture(
        "FalconForCausalLM", "falcon",
        dict(norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP", bias=False, rotary_percentage=1.0,
             norm_unit_offset=False, norm_affine=True),
        {**COMMON_KEYS, "norm_eps": "layer_norm_epsilon", "intermediate_size": "ffn_hidden_size", "bias": "bias"},
        {
            "transformer.word_embeddings": "transformer.wte",
            "transformer.h.{l}.self_attention.dense": "transformer.h.{l}.attn.proj",
            "transformer.h.{l}.mlp.dense_h_to_4h": "transformer.h.{l}.mlp.fc",
            "transformer.h.{l}.mlp.dense_4h_to_h": "transformer.h.{l}.mlp.proj",
            "transformer.ln_f": "transformer.ln_f",
            "lm_head": "lm_head",
        },
        ("transformer.h.{l}.self_attention.query_key_value",), qkv_layout="interleaved",
        variants=(
            ({"parallel_residual": True, "shared_attention_norm": True}, {"transformer.h.{l}.input_layernorm": "transformer.h.{l}.norm_1"}),
            ({"parallel_residual": True, "shared_attention_norm": False},
             {"transformer.h.{l}.ln_attn": "transformer.h.{l}.norm_1", "transformer.h.{l}.ln_mlp": "transformer.h.{l}.norm_2"}),
            ({"parallel_residual": False},
             {"transformer.h.{l}.input_layernorm": "transformer.h.{l}.norm_1",
              "transformer.h.{l}.post_attention_layernorm": "transformer.h.{l}.norm_2"}),
        ),
        hf_defaults={"tie_word_embeddings": True, "max_position_embeddings": 2048, "alibi": False, "activation": "gelu"},
        requires={"alibi": False}, act="activation", read=_falcon_read, write=_falcon_write,
    ),
    Architecture(
        "StableLmForCausalLM", "stablelm", dict(LLAMA_CONFIG, norm_class_name="LayerNorm"),
        {**LLAMA_KEYS, "norm_eps": "layer_norm_eps", "rotary_percentage": "partial_rotary_factor",
         "attn_bias": "use_qkv_bias", "parallel_residual": "use_parallel_residual"},
        LLAMA_MODULES, LLAMA_QKV,
        hf_defaults={"tie_word_embeddings": False, "partial_rotary_factor": 0.25, "qk_layernorm": False, "use_parallel_residual": False},
        requires={"qk_layernorm": False}, read=_stablelm_read,
    ),
    Architecture(
        # OLMo 1: LayerNorms without weights, so its norms have no keys at all
        "OlmoForCausalLM", "olmo", dict(LLAMA_CONFIG, norm_class_name="LayerNorm", norm_affine=False, norm_eps=1e-5),
        {k: v for k, v in LLAMA_KEYS.items() if k != "norm_eps"},
        _without(LLAMA_MODULES, "model.layers.{l}.input_layernorm", "model.layers.{l}.post_attention_layernorm", "model.norm"),
        LLAMA_QKV,
        hf_defaults={"tie_word_embeddings": False, "clip_qkv": None, "attention_bias": False},
        requires={"clip_qkv": None, "attention_bias": False},
    ),
    Architecture(
        "Olmo2ForCausalLM", "olmo2",
        dict(LLAMA_CONFIG, norm_qk=True, norm_qk_type="olmo2", post_attention_norm=True, post_mlp_norm=True, norm_1=False, norm_2=False),
        LLAMA_KEYS,
        {
            **_without(LLAMA_MODULES, "model.layers.{l}.input_layernorm"), **QK_NORM,
            "model.layers.{l}.post_attention_layernorm": "transformer.h.{l}.post_attention_norm",
            "model.layers.{l}.post_feedforward_layernorm": "transformer.h.{l}.post_mlp_norm",
        },
        LLAMA_QKV,
        hf_defaults={"tie_word_embeddings": False, "attention_bias": False}, requires={"attention_bias": False},
    ),
)
# Gemma 3's multimodal checkpoints: the language model under another prefix; converting back writes the text model
_register(
    replace(
        ARCHITECTURES["Gemma3ForCausalLM"],
        hf_class="Gemma3ForConditionalGeneration", text_config=True, export_as="Gemma3ForCausalLM",
        prefixes={"language_model.model.": "model.", "model.language_model.": "model.", "language_model.lm_head.": "lm_head."},
        ignore=("vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."),
    )
)
# the order in which convert_from_litgpt tries the classes when the source folder names none
EXPORT_ORDER = (
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MixtralForCausalLM",
    "Qwen3MoeForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "GPTNeoXForCausalLM",
    "PhiForCausalLM", "FalconForCausalLM", "StableLmForCausalLM", "OlmoForCausalLM", "Olmo2ForCausalLM", "Phi3ForCausalLM",
)


def find_architecture(hf_config: Dict[str, Any]) -> Architecture:
    """The table for a config.json, by its `architectures` entry."""
    names = hf_config.get("architectures") or []
    for name in names:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    if not names:
        raise CheckpointError("config.json names no architecture (its `architectures` list is missing)")
    raise CheckpointError(f"unsupported architecture {names[0]}; supported: {', '.join(sorted(ARCHITECTURES))}")
