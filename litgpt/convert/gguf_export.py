"""`litgpt convert_from_litgpt ... --format gguf`: a LitGPT checkpoint as one GGUF file (llama.cpp, Ollama, LM Studio).

The weights go the same way as for Hugging Face (our names -> HF names by `weights.Translator`), then to GGUF's
names by the `gguf` package's own map, so only what GGUF adds lives here: the architecture's metadata, the
tokenizer as GGUF spells it, the tensor encodings, and two layout differences of llama.cpp:

    llama (Llama, Mistral)   rotates adjacent pairs of q/k, HF rotates halves: q and k rows are permuted
    gemma                    stores RMSNorm weights with Gemma's +1 offset added
"""

import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

from litgpt.checkpoint import CheckpointError, read_json
from litgpt.config import Config

GGUF_ARCHITECTURES = {  # HF class we would export as -> llama.cpp's architecture
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3", "GemmaForCausalLM": "gemma", "Phi3ForCausalLM": "phi3",
}
SUPPORTED = "Llama, Mistral, Qwen2, Qwen3, Gemma and Phi-3"
DTYPES = ("f16", "bf16", "q8_0")
BPE_PRE_TOKENIZERS = {"llama": "llama-bpe", "qwen2": "qwen2", "qwen3": "qwen2", "phi3": "gpt-4o"}  # llama.cpp's names


def export_gguf(checkpoint_dir: Path, out: Path, config: Config, state_dict: Dict[str, Any], hf_class: str, dtype: str) -> Path:
    """Write `out` (a .gguf file, or a folder to hold model-DTYPE.gguf) and return the file's path."""
    try:
        import gguf
    except ImportError:
        raise CheckpointError("GGUF export needs the gguf package: pip install 'litgpt[all]' or pip install gguf") from None

    arch = GGUF_ARCHITECTURES.get(hf_class)
    if arch is None:
        raise CheckpointError(f"GGUF export supports {SUPPORTED} models; {config.name!r} is a {hf_class}")
    if dtype not in DTYPES:
        raise CheckpointError(f"--dtype {dtype!r} is not a GGUF type we write; choose one of: {', '.join(DTYPES)}")
    if config.rope_scaling == "yarn":
        raise CheckpointError("GGUF export of YaRN-scaled RoPE is not supported (llama3, linear and longrope are)")
    path = out if out.suffix == ".gguf" else out / f"model-{dtype}.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    writer = gguf.GGUFWriter(tmp, arch)
    _metadata(writer, config, arch, dtype)
    _tokenizer(writer, checkpoint_dir, config, arch)
    for name, tensor in _tensors(state_dict, config, hf_class, arch):
        data, raw_dtype = _encode(tensor, name, dtype)
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    print(f"Wrote {path}", file=sys.stderr)
    return path


def _metadata(writer: Any, config: Config, arch: str, dtype: str) -> None:
    import gguf

    writer.add_name(config.name or "model")
    writer.add_context_length(config.block_size)
    writer.add_embedding_length(config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_query_groups)
    writer.add_key_length(config.head_size)
    writer.add_value_length(config.head_size)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_rope_freq_base(float(config.rope_base))
    writer.add_rope_dimension_count(config.rope_n_elem)
    file_types = {"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(file_types[dtype])
    if config.sliding_window_size is not None and any(config.sliding_window_indices):
        writer.add_sliding_window(config.sliding_window_size)
    adj = config.rope_adjustments or {}
    if config.rope_scaling == "linear" or config.rope_condense_ratio != 1:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(adj.get("factor", config.rope_condense_ratio)))
    elif config.rope_scaling == "longrope":
        writer.add_rope_scaling_attn_factors(float(adj["attention_factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(adj["original_max_seq_len"]))


def _tensors(state_dict: Dict[str, Any], config: Config, hf_class: str, arch: str) -> Iterator[Tuple[str, Any]]:
    """(GGUF name, float32 tensor) for every weight, and the RoPE factor tensors llama.cpp reads."""
    import gguf
    import torch

    from litgpt.convert.architectures import ARCHITECTURES
    from litgpt.convert.weights import Translator

    names = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), config.n_layer)
    translate = Translator(ARCHITECTURES[hf_class], config, to_lit=False)
    for lit_name, tensor in state_dict.items():
        for hf_name, hf_tensor in translate(lit_name, tensor):
            name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if name is None:
                if hf_name == "lm_head.weight" and arch == "gemma":  # Gemma ties it to the embedding
                    continue
                raise CheckpointError(f"GGUF ({arch}) has no tensor for {hf_name}")
            hf_tensor = hf_tensor.float()
            if arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
                hf_tensor = _pair_rotary_rows(hf_tensor, config.n_head if "attn_q" in name else config.n_query_groups)
            if arch == "gemma" and name.endswith("norm.weight"):
                hf_tensor = hf_tensor + 1
            yield name, hf_tensor
    translate.finish()
    yield from _rope_factor_tensors(config, arch)


def _pair_rotary_rows(weight: Any, heads: int) -> Any:
    """Rows of each head from [first halves | second halves] to interleaved pairs, llama.cpp's rotation for llama."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def _rope_factor_tensors(config: Config, arch: str) -> Iterator[Tuple[str, Any]]:
    """llama.cpp divides each RoPE frequency by a factor from a tensor: Llama 3's in rope_freqs, Phi-3's two sets."""
    import torch

    adj = config.rope_adjustments or {}
    if config.rope_scaling == "longrope":
        if arch != "phi3":
            raise CheckpointError(f"GGUF ({arch}) has no LongRoPE; only Phi-3 models carry it")
        yield "rope_factors_long.weight", torch.tensor(adj["long_factor"], dtype=torch.float32)
        yield "rope_factors_short.weight", torch.tensor(adj["short_factor"], dtype=torch.float32)
    elif config.rope_scaling == "llama3":
        if arch != "llama":
            raise CheckpointError(f"GGUF ({arch}) has no Llama 3 RoPE scaling")
        from litgpt.model import rope_frequencies

        plain, _ = rope_frequencies(config.rope_n_elem, config.rope_base)
        scaled, _ = rope_frequencies(config.rope_n_elem, config.rope_base, adj)
        yield "rope_freqs.weight", plain / scaled


def _encode(tensor: Any, name: str, dtype: str) -> Tuple[Any, Optional[Any]]:
    """The bytes GGUF stores and their type; 1-D tensors (norms, biases, factors) stay float32, as llama.cpp keeps them."""
    import gguf
    import numpy as np

    data = tensor.contiguous().numpy().astype(np.float32)
    if data.ndim == 1:
        return data, None
    if dtype == "f16":
        return data.astype(np.float16), None
    if dtype == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]:
        return data.astype(np.float16), None  # rows that are not whole Q8_0 blocks, as llama.cpp's converter does
    qtype = gguf.GGMLQuantizationType.BF16 if dtype == "bf16" else gguf.GGMLQuantizationType.Q8_0
    return gguf.quants.quantize(data, qtype), qtype


def _tokenizer(writer: Any, checkpoint_dir: Path, config: Config, arch: str) -> None:
    """The vocabulary as llama.cpp reads it: SentencePiece ("llama") from tokenizer.model, else byte-level BPE ("gpt2")."""
    from litgpt.tokenizer import Tokenizer

    tokenizer = Tokenizer(checkpoint_dir)
    if (checkpoint_dir / "tokenizer.model").is_file():
        tokens, scores, types = _sentencepiece_vocab(checkpoint_dir / "tokenizer.model")
        writer.add_tokenizer_model("llama")
    else:
        tokens, types, merges = _bpe_vocab(checkpoint_dir / "tokenizer.json")
        scores = None
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(BPE_PRE_TOKENIZERS.get(arch, "default"))
        writer.add_token_merges(merges)
    if len(tokens) > config.padded_vocab_size:
        raise CheckpointError(f"the tokenizer has {len(tokens)} tokens, more than the model's {config.padded_vocab_size} embeddings")
    # llama.cpp wants one token per embedding row: the padding rows become unused tokens
    pad = config.padded_vocab_size - len(tokens)
    tokens += [f"[PAD{i}]" for i in range(len(tokens), config.padded_vocab_size)]
    types += [5] * pad  # UNUSED
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if scores is not None:
        writer.add_token_scores(scores + [-1000.0] * pad)
    if tokenizer.bos_id is not None:
        writer.add_bos_token_id(tokenizer.bos_id)
    if tokenizer.eos_id is not None:
        writer.add_eos_token_id(tokenizer.eos_id)
    writer.add_add_bos_token(bool(tokenizer.use_bos))
    config_path = checkpoint_dir / "tokenizer_config.json"
    template = read_json(config_path).get("chat_template") if config_path.is_file() else None
    if isinstance(template, str):
        writer.add_chat_template(template)


def _sentencepiece_vocab(path: Path) -> Tuple[list, list, list]:
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor(model_file=str(path))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        # GGUF token types: 1 normal, 2 unknown, 3 control, 5 unused, 6 byte
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i) else 6 if sp.is_byte(i) else 1)
    return tokens, scores, types


def _bpe_vocab(path: Path) -> Tuple[list, list, list]:
    if not path.is_file():
        raise CheckpointError(f"GGUF export needs tokenizer.json or tokenizer.model in {path.parent}")
    data = read_json(path)
    model = data.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise CheckpointError(f"{path}: GGUF export reads byte-level BPE from tokenizer.json (a SentencePiece model needs tokenizer.model)")
    by_id = {i: token for token, i in model["vocab"].items()}
    types = {i: 1 for i in by_id}
    for added in data.get("added_tokens") or []:
        by_id[added["id"]] = added["content"]
        types[added["id"]] = 3 if added.get("special") else 4  # control, user-defined
    size = max(by_id) + 1
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    return tokens, [types.get(i, 5) for i in range(size)], merges
