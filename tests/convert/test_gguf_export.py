"""`convert_from_litgpt --format gguf`: read back with gguf's own reader, every tensor equals the Hugging Face model's
(exact in f16 and bf16, within Q8_0's rounding), in llama.cpp's layout; the metadata and the tokenizer say what the
model is. Where llama-cpp-python is installed, llama.cpp's greedy tokens equal ours."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from litgpt.checkpoint import CheckpointError
from litgpt.convert.hf_to_lit import convert_to_litgpt
from litgpt.convert.lit_to_hf import convert_from_litgpt
from hf_tiny import FAMILIES as HF_FAMILIES, randomize

import gguf  # noqa: E402  a dependency of the package (--format gguf): a missing one fails here, never skips

# family -> llama.cpp architecture; the tokenizer: SentencePiece for Gemma, byte-level BPE for the others
FAMILIES = {"llama-3": "llama", "mistral": "llama", "qwen-2": "qwen2", "qwen-3": "qwen3", "gemma": "gemma",
            "phi-3": "phi3", "phi-4-mini": "phi3"}
# GGUF name (per layer: after "blk.N.") -> HF name (after "model.layers.N."); written out here, not taken from gguf
TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
LAYER = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_qkv": "self_attn.qkv_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj", "ffn_down": "mlp.down_proj", "ffn_up": "mlp.up_proj",
}


def field(reader, key):
    return reader.fields[key].contents()


def hf_name(gguf_name, arch):
    parts = gguf_name.split(".")
    if parts[0] == "blk":
        module = LAYER[parts[2]]
        if arch == "phi3" and parts[2] == "ffn_up":
            module = "mlp.gate_up_proj"
        return f"model.layers.{parts[1]}.{module}.{parts[3]}"
    return f"{TOP[parts[0]]}.{parts[1]}"


def expected_tensor(hf_state, name, arch, config):
    tensor = hf_state[hf_name(name, arch)].float()
    if arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):  # llama.cpp rotates adjacent pairs
        heads = config["num_attention_heads"] if "attn_q" in name else config["num_key_value_heads"]
        half = tensor.shape[0] // heads // 2
        tensor = tensor.view(heads, 2, half, -1).transpose(1, 2).reshape(tensor.shape)
    if arch == "gemma" and name.endswith("norm.weight"):  # stored with Gemma's +1
        tensor = tensor + 1
    return tensor


@pytest.fixture
def lit_checkpoint(tmp_path, bpe_tokenizer_json, sentencepiece_model):
    """A converted tiny HF model of `family` with 400 tokens, the size of the test tokenizers."""
    import transformers

    def make(family):
        config_class, model_class, kwargs, _ = HF_FAMILIES[family]
        config = getattr(transformers, config_class)(**{**kwargs, "vocab_size": 400})
        torch.manual_seed(0)
        hf_model = getattr(transformers, model_class)._from_config(config, attn_implementation="eager").eval()
        randomize(hf_model)
        if getattr(hf_model.config, "tie_word_embeddings", False):
            hf_model.tie_weights()
        hf_dir = tmp_path / "hf"
        hf_model.save_pretrained(hf_dir)
        if family == "gemma":
            shutil.copy(sentencepiece_model, hf_dir / "tokenizer.model")
            (hf_dir / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True, "chat_template": "{{ messages }}"}))
        else:
            shutil.copy(bpe_tokenizer_json, hf_dir / "tokenizer.json")
            (hf_dir / "tokenizer_config.json").write_text(
                json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "chat_template": "{{ messages }}"}))
        convert_to_litgpt(hf_dir)
        return hf_dir, hf_model

    return make


CASES = [(family, "f16") for family in FAMILIES] + [("llama-3", "bf16"), ("gemma", "bf16"), ("llama-3", "q8_0"), ("phi-4-mini", "q8_0")]
STORED = {"f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}


@pytest.mark.parametrize("family, dtype", CASES)
def test_gguf_tensors_and_metadata(family, dtype, lit_checkpoint, tmp_path):
    hf_dir, hf_model = lit_checkpoint(family)
    arch = FAMILIES[family]
    convert_from_litgpt(hf_dir, tmp_path / "model.gguf", format="gguf", dtype=dtype)
    reader = gguf.GGUFReader(tmp_path / "model.gguf")
    config = hf_model.config.to_dict()

    assert field(reader, "general.architecture") == arch
    assert field(reader, f"{arch}.block_count") == config["num_hidden_layers"]
    assert field(reader, f"{arch}.embedding_length") == config["hidden_size"]
    assert field(reader, f"{arch}.attention.head_count") == config["num_attention_heads"]
    assert field(reader, f"{arch}.attention.head_count_kv") == config["num_key_value_heads"]
    assert field(reader, f"{arch}.context_length") == config["max_position_embeddings"]
    head_size = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    assert field(reader, f"{arch}.rope.dimension_count") == int(head_size * config.get("partial_rotary_factor", 1.0))
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == hf_model.get_input_embeddings().weight.shape[0]  # one token per embedding row
    assert field(reader, "tokenizer.ggml.model") == ("llama" if family == "gemma" else "gpt2")
    assert field(reader, "tokenizer.chat_template") == "{{ messages }}"
    if family != "gemma":
        assert tokens[:2] == ["<|begin_of_text|>", "<|end_of_text|>"] and field(reader, "tokenizer.ggml.eos_token_id") == 1

    hf_state = hf_model.state_dict()
    seen = set()
    for tensor in reader.tensors:
        shape = tuple(reversed([int(n) for n in tensor.shape]))  # GGUF lists dimensions innermost first
        got = torch.from_numpy(gguf.quants.dequantize(tensor.data, tensor.tensor_type).copy()).float().reshape(shape)
        if tensor.name == "rope_freqs.weight":  # Llama 3's scaling: test_llama3_rope_frequency_factors
            continue
        if tensor.name.startswith("rope_factors_"):
            scaling = config.get("rope_scaling") or config.get("rope_parameters")
            assert got.tolist() == pytest.approx(scaling[tensor.name.split("_")[2].split(".")[0] + "_factor"])
            seen.add(tensor.name)
            continue
        # matrices in the type asked for, vectors (norms, biases) in float32
        assert tensor.tensor_type.name == (STORED[dtype] if len(shape) == 2 else "F32"), tensor.name
        want = expected_tensor(hf_state, tensor.name, arch, config)
        seen.add(hf_name(tensor.name, arch))
        if tensor.tensor_type == gguf.GGMLQuantizationType.Q8_0:
            # per block of 32: a scale of absmax/127 stored in f16 (its rounding adds a little), values rounded to it
            blocks = want.reshape(-1, 32).abs().amax(1, keepdim=True)
            assert ((got.reshape(-1, 32) - want.reshape(-1, 32)).abs() <= blocks / 127 * 0.6 + 1e-6).all(), tensor.name
        else:
            rounded = {gguf.GGMLQuantizationType.F16: torch.float16, gguf.GGMLQuantizationType.BF16: torch.bfloat16,
                       gguf.GGMLQuantizationType.F32: torch.float32}[tensor.tensor_type]
            assert torch.equal(got, want.to(rounded).float()), tensor.name
    wanted = {k for k in hf_state if not (k == "lm_head.weight" and arch == "gemma")}
    assert wanted <= seen, sorted(wanted - seen)
    if family == "phi-4-mini":
        assert {"rope_factors_long.weight", "rope_factors_short.weight"} <= seen
        assert field(reader, "phi3.rope.scaling.original_context_length") == 16


def test_llama3_rope_frequency_factors(lit_checkpoint, tmp_path):
    """Llama 3's scaling goes to llama.cpp as rope_freqs: each frequency's divisor, as transformers computes it."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf_dir, hf_model = lit_checkpoint("llama-3")
    convert_from_litgpt(hf_dir, tmp_path, format="gguf")
    tensors = {t.name: t for t in gguf.GGUFReader(tmp_path / "model-f16.gguf").tensors}
    plain, _ = ROPE_INIT_FUNCTIONS["default"](hf_model.config) if "default" in ROPE_INIT_FUNCTIONS else (None, None)
    if plain is None:
        head = hf_model.config.head_dim
        plain = 1.0 / hf_model.config.rope_parameters["rope_theta"] ** (torch.arange(0, head, 2).float() / head)
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_model.config)
    assert torch.from_numpy(tensors["rope_freqs.weight"].data.copy()) == pytest.approx(plain / scaled, rel=1e-5)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "litgpt", "convert_from_litgpt", *map(str, args)], capture_output=True, text=True)


def test_unsupported_family_and_bad_flags_are_one_line(tiny_checkpoint, hf_checkpoint, bpe_tokenizer_json, tmp_path):
    hf_dir, _ = hf_checkpoint("falcon-7b")
    shutil.copy(bpe_tokenizer_json, hf_dir / "tokenizer.json")
    convert_to_litgpt(hf_dir)
    result = run_cli(hf_dir, tmp_path / "x.gguf", "--format", "gguf")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].endswith("GGUF export supports Llama, Mistral, Qwen2, Qwen3, Gemma and Phi-3 models; 'hf' is a FalconForCausalLM")
    assert "Traceback" not in result.stderr
    with pytest.raises(CheckpointError, match="--dtype applies to --format gguf only"):
        convert_from_litgpt(tiny_checkpoint, tmp_path / "hf", dtype="q8_0")
    result = run_cli(tiny_checkpoint, tmp_path / "x.gguf", "--format", "gguf", "--dtype", "q4_0")
    assert result.returncode != 0 and "q4_0" in result.stderr and "Traceback" not in result.stderr


def test_llama_cpp_greedy_tokens_equal_ours(lit_checkpoint, tmp_path):
    try:
        import llama_cpp
    except ImportError:
        pytest.skip("llama-cpp-python is not installed: pip finds no wheel of it here, and its source build compiles "
                    "llama.cpp (many minutes)")
    from litgpt.checkpoint import load_model

    hf_dir, _ = lit_checkpoint("llama-3")
    convert_from_litgpt(hf_dir, tmp_path / "m.gguf", format="gguf", dtype="f16")
    prompt = [0, 5, 17, 42, 7]
    llm = llama_cpp.Llama(model_path=str(tmp_path / "m.gguf"), n_ctx=64, verbose=False, logits_all=False)
    theirs = []
    for token in llm.generate(prompt, top_k=1, temp=0.0):
        theirs.append(token)
        if len(theirs) == 20:
            break
    model = load_model(hf_dir, precision="32-true").half().float()  # the weights as the f16 file holds them
    ours, idx = [], torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(20):
            token = model(idx)[0, -1].argmax().item()
            ours.append(token)
            idx = torch.cat([idx, torch.tensor([[token]])], 1)
    assert theirs == ours
