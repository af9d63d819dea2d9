"""The model registry (`litgpt/models/*.yaml`): it loads, it holds the right facts, and every entry builds a model."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from litgpt.config import REGISTRY_DIR, Config, find_entry, names, registry

FIELDS = {f.name: f for f in dataclasses.fields(Config)}
DERIVED_FROM_NAME = {"norm_unit_offset", "norm_affine"}


def _default(name):
    f = FIELDS[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


# --------------------------------------------------------------------------------------------
# (a) every entry loads, names are unique, the files are tidy
# --------------------------------------------------------------------------------------------


def test_registry_size_and_unique_names():
    entries = registry()
    all_names = [e["name"] for e in entries]
    assert len(all_names) == 210  # LitGPT 0.5.13 has exactly this many configs
    assert len(set(all_names)) == len(all_names)
    assert names() == sorted(all_names)
    hf_ids = [f"{e['hf_config']['org']}/{e['hf_config']['name']}" for e in entries]
    assert len(set(hf_ids)) == len(hf_ids)


@pytest.mark.parametrize("name", names())
def test_every_entry_loads(name):
    config = Config.from_name(name)
    assert config.name == name
    assert config.head_size and config.padded_vocab_size >= config.vocab_size
    assert config.n_head % config.n_query_groups == 0
    for indices in (config.sliding_window_indices, config.rope_indices):
        if indices is not None:
            assert len(indices) == config.n_layer and set(indices) <= {0, 1}


@pytest.mark.parametrize("path", sorted(REGISTRY_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_yaml_files_are_compact(path: Path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# "), "each registry file starts with a one-line comment"
    entries = yaml.safe_load(text)
    assert isinstance(entries, list) and entries
    for entry in entries:
        assert set(entry) <= set(FIELDS) - DERIVED_FROM_NAME, entry["name"]
        assert set(entry["hf_config"]) == {"org", "name"}, entry["name"]
        for key, value in entry.items():
            if key != "name":
                assert value != _default(key) or type(value) is not type(_default(key)), (entry["name"], key)


def test_lookup_by_hf_name_and_repo_id():
    assert Config.from_name("meta-llama/Llama-3.2-1B").name == "Llama-3.2-1B"
    assert Config.from_name("Meta-Llama-3.1-8B").name == "Llama-3.1-8B"
    assert Config.from_name("meta-llama/Meta-Llama-3.1-8B-Instruct").name == "Llama-3.1-8B-Instruct"
    assert Config.from_name("TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T").name == "tiny-llama-1.1b"
    assert Config.from_name("google/gemma-2-9b").name == "Gemma-2-9b"
    assert Config.from_name("keeeeenw/MicroLlama").name == "micro-llama-300M"
    assert find_entry("no-such-model") is None
    with pytest.raises(ValueError):
        Config.from_name("no-such-model")
    # kwargs override registry values
    assert Config.from_name("pythia-14m", n_layer=2).n_layer == 2


def test_generated_variants_are_present():
    expected = [
        "pythia-70m-deduped", "pythia-12b-deduped", "falcon-180B-chat", "Falcon3-10B-Instruct",
        "Llama-2-70b-chat-hf", "Llama-3.3-70B-Instruct", "CodeLlama-34b-Python-hf", "CodeLlama-70b-Instruct-hf",
        "Gemma-2-27b-it", "Gemma-3-1b-it", "OLMo-2-1124-13B-DPO", "Qwen2.5-Coder-32B-Instruct",
        "Qwen2.5-Math-72B-Instruct", "Qwen3-14B-Base", "Qwen3-30B-A3B-Instruct-2507", "QwQ-32B",
        "SmolLM2-1.7B-Instruct", "salamandra-7b-instruct", "R1-Distill-Llama-70B", "tiny-llama-1.1b-chat",
    ]  # fmt: skip
    known = set(names())
    assert [n for n in expected if n not in known] == []
    assert not {"pythia-14m-deduped", "pythia-31m-deduped"} & known


# --------------------------------------------------------------------------------------------
# (b) facts, as in the models' HF config.json files
# --------------------------------------------------------------------------------------------


def _check(config, **expected):
    actual = {k: getattr(config, k) for k in expected}
    assert actual == expected


def test_llama_3_1_8b():
    c = Config.from_name("Llama-3.1-8B")
    assert c.hf_config == {"org": "meta-llama", "name": "Meta-Llama-3.1-8B"}
    _check(
        c, n_layer=32, n_embd=4096, n_head=32, n_query_groups=8, head_size=128, intermediate_size=14336,
        rope_base=500000, block_size=131072, vocab_size=128000, padded_vocab_size=128256, norm_eps=1e-5,
        norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", bias=False, parallel_residual=False,
        rotary_percentage=1.0, rope_n_elem=128,
    )  # fmt: skip
    llama3_rope = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_seq_len": 8192}
    assert c.rope_adjustments == llama3_rope
    assert Config.from_name("Llama-3.2-1B").rope_adjustments["factor"] == 32.0
    _check(Config.from_name("Llama-3.2-1B"), n_layer=16, n_embd=2048, n_query_groups=8, intermediate_size=8192)


def test_pythia_160m():
    c = Config.from_name("pythia-160m")
    _check(
        c, n_layer=12, n_embd=768, n_head=12, n_query_groups=12, head_size=64, block_size=2048, vocab_size=50254,
        padded_vocab_size=50304, rotary_percentage=0.25, rope_n_elem=16, parallel_residual=True, bias=True,
        norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP", intermediate_size=3072,
    )  # fmt: skip
    assert Config.from_name("pythia-160m-deduped").hf_config == {"org": "EleutherAI", "name": "pythia-160m-deduped"}


def test_phi_2():
    _check(
        Config.from_name("phi-2"), n_layer=32, n_embd=2560, n_head=32, head_size=80, vocab_size=50257,
        padded_vocab_size=51200, rotary_percentage=0.4, rope_n_elem=32, shared_attention_norm=True,
        lm_head_bias=True, gelu_approximate="tanh", intermediate_size=10240, block_size=2048,
    )  # fmt: skip


def test_gemma_2_9b_and_gemma_3():
    c = Config.from_name("Gemma-2-9b")
    _check(
        c, n_layer=42, n_embd=3584, n_head=16, n_query_groups=8, head_size=256, intermediate_size=14336,
        attention_logit_softcapping=50.0, final_logit_softcapping=30.0, attention_scores_scalar=256,
        sliding_window_size=4096, post_attention_norm=True, post_mlp_norm=True, scale_embeddings=True,
        mlp_class_name="GemmaMLP", gelu_approximate="tanh", padded_vocab_size=256000, norm_unit_offset=True,
    )  # fmt: skip
    assert c.sliding_window_indices == [1, 0] * 21
    assert Config.from_name("Gemma-2-27b").attention_scores_scalar == 144

    g3 = Config.from_name("Gemma-3-27b-it")
    _check(
        g3, n_layer=62, n_embd=5376, n_head=32, n_query_groups=16, head_size=128, intermediate_size=21504,
        rope_base=1000000, rope_local_base_freq=10000, sliding_window_size=1024, norm_qk=True,
        attention_scores_scalar=168, rope_adjustments={"factor": 8.0}, padded_vocab_size=262144,
    )  # fmt: skip
    pattern = [0 if (i + 1) % 6 == 0 else 1 for i in range(62)]
    assert g3.sliding_window_indices == pattern and g3.rope_indices == pattern
    assert Config.from_name("Gemma-3-1b-it").rope_adjustments is None


def test_qwen3():
    _check(Config.from_name("Qwen3-0.6B"), n_embd=1024, n_head=16, head_size=128, n_query_groups=8, norm_qk=True)
    _check(
        Config.from_name("Qwen3-8B"), n_layer=36, n_embd=4096, n_head=32, n_query_groups=8, head_size=128,
        intermediate_size=12288, rope_base=1000000, norm_eps=1e-6, block_size=40960, padded_vocab_size=151936,
    )  # fmt: skip
    _check(
        Config.from_name("Qwen3-30B-A3B"), mlp_class_name="LLaMAMoE", n_expert=128, n_expert_per_token=8,
        moe_intermediate_size=768, n_layer=48, n_query_groups=4,
    )  # fmt: skip
    assert Config.from_name("Qwen2.5-7B").attn_bias is True


def test_mixtral_tinyllama_olmo():
    _check(
        Config.from_name("Mixtral-8x7B-v0.1"), mlp_class_name="LLaMAMoE", n_expert=8, n_expert_per_token=2,
        intermediate_size=14336, n_layer=32, n_query_groups=8, rope_base=1000000, block_size=32768,
    )  # fmt: skip
    c = Config.from_name("tiny-llama-1.1b")
    assert c.hf_config == {"org": "TinyLlama", "name": "TinyLlama-1.1B-intermediate-step-1431k-3T"}
    _check(
        c, n_layer=22, n_embd=2048, n_head=32, n_query_groups=4, intermediate_size=5632, vocab_size=32000,
        block_size=2048,
    )  # fmt: skip
    _check(Config.from_name("OLMo-1B-hf"), norm_class_name="LayerNorm", norm_affine=False, norm_unit_offset=False)
    _check(
        Config.from_name("OLMo-2-1124-7B"), norm_qk=True, norm_qk_type="olmo2", norm_1=False, norm_2=False,
        post_attention_norm=True, post_mlp_norm=True, norm_class_name="RMSNorm",
    )  # fmt: skip
    assert Config.from_name("LLaMA-2-7B-32K").rope_condense_ratio == 8


# --------------------------------------------------------------------------------------------
# (c) every entry builds a GPT on the meta device
# --------------------------------------------------------------------------------------------


def _gpt():
    from litgpt.model import GPT  # a model that does not import fails these tests, never skips them

    return GPT


def _architectures():
    """Entries grouped by identical config (apart from the names): building one of a group builds them all."""
    groups = {}
    for name in names():
        values = dataclasses.asdict(Config.from_name(name))
        del values["name"], values["hf_config"]
        groups.setdefault(repr(sorted(values.items())), []).append(name)
    return [group[0] for group in groups.values()]


@pytest.mark.parametrize("name", _architectures())
def test_every_entry_builds_on_meta(name):
    import torch

    GPT = _gpt()
    config = Config.from_name(name)
    if config.n_expert > 8:  # 128-expert MoE stacks take seconds to build; their layers are all alike
        config = Config.from_name(name, n_layer=2)
    with torch.device("meta"):
        model = GPT(config)
    assert model.config is config or model.config == config
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize(
    "name, n_params",
    [
        ("pythia-160m", 162_322_944),
        ("phi-2", 2_779_683_840),
        ("Llama-3.1-8B", 8_030_261_248),
        ("Mixtral-8x7B-v0.1", 46_702_792_704),
    ],
)
def test_parameter_counts(name, n_params):
    import torch

    GPT = _gpt()
    with torch.device("meta"):
        model = GPT(Config.from_name(name))
    assert sum(p.numel() for p in model.parameters()) == n_params
