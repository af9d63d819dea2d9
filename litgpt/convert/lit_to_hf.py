"""`litgpt convert_from_litgpt`: a LitGPT checkpoint folder -> a Hugging Face folder that transformers loads directly."""

import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

from litgpt.checkpoint import (
    TOKENIZER_FILES,
    CheckpointError,
    copy_tokenizer_files,
    incremental_save,
    load_state_dict,
    model_state_dict,
    read_json,
    resolve_checkpoint_dir,
    write_json_atomic,
)
from litgpt.config import Config, find_entry
from litgpt.convert.architectures import ARCHITECTURES, EXPORT_ORDER, Architecture, find_architecture
from litgpt.convert.hf_config import config_from_hf, config_to_hf, differences, text_part

SHARD_FILES = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?(\.tmp)?")  # .tmp: left by a killed run
TOKEN_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")


def convert_from_litgpt(
    checkpoint_dir: Path,
    output_dir: Path,
    *,
    model_name: Optional[str] = None,
    max_shard_size: Union[int, str] = "5GB",
    format: Literal["hf", "gguf"] = "hf",
    dtype: Optional[Literal["f16", "bf16", "q8_0"]] = None,
    model_pth: bool = True,
) -> None:
    """Convert a LitGPT checkpoint folder to a Hugging Face one that transformers and `lm_eval --model hf` load directly.

    Args:
        checkpoint_dir: The LitGPT folder: lit_model.pth, model_config.yaml and the tokenizer files.
        output_dir: Where to write config.json, model.safetensors (sharded, with model.safetensors.index.json, past
            max_shard_size), generation_config.json and the tokenizer files. With `--format gguf`: the .gguf file
            to write, or a folder to hold model-DTYPE.gguf.
        model_name: The registry name whose config to use when the folder has no model_config.yaml.
        max_shard_size: The largest safetensors file to write, as a byte count or with a unit ("5GB", "500MB").
        format: "hf" (a Hugging Face folder) or "gguf" (one GGUF file for llama.cpp and its kin; Llama, Mistral,
            Qwen2, Qwen3, Gemma and Phi-3 models).
        dtype: With `--format gguf`, how the weight matrices are stored: f16 (the default), bf16 or q8_0.
        model_pth: Also write model.pth, the same weights under their Hugging Face names as one torch state dict, the
            file LitGPT's convert_from_litgpt writes (`AutoModel.from_pretrained(DIR, state_dict=torch.load(...))`
            reads it). It doubles the output's size; false writes the safetensors alone.
    """
    checkpoint_dir, output_dir = resolve_checkpoint_dir(checkpoint_dir), Path(output_dir)
    if not checkpoint_dir.is_dir():
        raise CheckpointError(f"{str(checkpoint_dir)!r} is not a folder")
    if format not in ("hf", "gguf"):
        raise CheckpointError(f"--format {format!r} is not a format we write; choose hf or gguf")
    if dtype is not None and format != "gguf":
        raise CheckpointError("--dtype applies to --format gguf only (the Hugging Face export keeps the checkpoint's dtype)")
    max_bytes = parse_size(max_shard_size)
    config = _config(checkpoint_dir, model_name)
    state_dict = lit_state_dict(checkpoint_dir / "lit_model.pth", config)
    source = checkpoint_dir / "config.json"
    arch, hf_config = export_architecture(config, read_json(source) if source.is_file() else None)
    if format == "gguf":
        from litgpt.convert.gguf_export import export_gguf

        export_gguf(checkpoint_dir, output_dir, config, state_dict, arch.hf_class, dtype or "f16")
        return
    import torch

    tie = torch.equal(state_dict["transformer.wte.weight"], state_dict["lm_head.weight"])
    dtype = state_dict["transformer.wte.weight"].dtype
    hf_config.update(tie_word_embeddings=tie, torch_dtype=str(dtype).replace("torch.", ""))
    hf_config.update(token_ids(hf_config, checkpoint_dir, config))
    output_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors(state_dict, arch, config, output_dir, max_bytes, skip=("lm_head.weight",) if tie else ())
    if model_pth:
        write_model_pth(state_dict, arch, config, output_dir / "model.pth")
    else:
        (output_dir / "model.pth").unlink(missing_ok=True)  # an earlier export's would not match these weights
    copy_tokenizer_files(checkpoint_dir, output_dir, tuple(n for n in TOKENIZER_FILES if n != "config.json"))
    if not (checkpoint_dir / "generation_config.json").is_file():  # e.g. a model pretrained here
        write_json_atomic(generation_config(hf_config, checkpoint_dir), output_dir / "generation_config.json")
    write_json_atomic(hf_config, output_dir / "config.json")  # last: a folder with config.json is complete


def export_architecture(config: Config, source: Optional[Dict[str, Any]] = None) -> Tuple[Architecture, Dict[str, Any]]:
    """The HF class to write `config` as, and its config.json.

    The source folder's class comes first (its config.json is the base, so token ids and the like survive);
    then the classes of `EXPORT_ORDER`. The first whose config.json reads back as the same model wins.
    """
    candidates: List[Tuple[Architecture, Dict[str, Any]]] = []
    if source is not None:
        try:
            arch = find_architecture(source)
        except CheckpointError as e:
            _warn(f"the source config.json is not used: {e}")
        else:
            candidates.append((ARCHITECTURES[arch.export_as or arch.hf_class], text_part(source, arch)))
    tokens = {k: v for k, v in (source or {}).items() if k in TOKEN_KEYS}
    candidates += [(ARCHITECTURES[name], tokens) for name in EXPORT_ORDER]
    problems = []
    for arch, base in candidates:
        try:
            hf_config = config_to_hf(config, arch, base)
            mismatch = differences(config, config_from_hf(hf_config, arch))
        except CheckpointError as e:
            mismatch = [str(e)]
        if not mismatch:
            if problems and source is not None and len(problems) == 1:
                _warn(f"the source's {problems[0]}; writing {arch.hf_class} instead")
            return arch, hf_config
        problems.append(f"{arch.hf_class} cannot express this model ({mismatch[0]})")
    raise CheckpointError(f"no supported Hugging Face architecture computes what this config does: {problems[0]}")


def token_ids(hf_config: Dict[str, Any], checkpoint_dir: Path, config: Config) -> Dict[str, Any]:
    """The bos/eos/pad ids config.json states: the source config.json's, else generation_config.json's, else None.

    Never left to the HF class's defaults: they need not fit this vocabulary (Phi3Config's pad id 32000 makes
    transformers refuse a model of 32,000 tokens or fewer), and a pad id outside the vocabulary becomes None.
    """
    path = checkpoint_dir / "generation_config.json"
    generation = read_json(path) if path.is_file() else {}
    generation = generation if isinstance(generation, dict) else {}
    ids = {key: hf_config[key] if key in hf_config else generation.get(key) for key in TOKEN_KEYS}
    pad = ids["pad_token_id"]
    if pad is not None and not (isinstance(pad, int) and 0 <= pad < config.padded_vocab_size):
        ids["pad_token_id"] = None
    return ids


def generation_config(hf_config: Dict[str, Any], checkpoint_dir: Path) -> Dict[str, Any]:
    """generation_config.json for a folder that has none: the token ids config.json states, else the tokenizer's,
    as transformers derives it from a model's config."""
    ids = {key: hf_config.get(key) for key in TOKEN_KEYS}
    if ids["bos_token_id"] is None or ids["eos_token_id"] is None:
        from litgpt.tokenizer import Tokenizer

        try:
            tokenizer = Tokenizer(checkpoint_dir)
        except (OSError, ValueError):
            tokenizer = None
        if tokenizer is not None:
            ids["bos_token_id"] = ids["bos_token_id"] if ids["bos_token_id"] is not None else tokenizer.bos_id
            ids["eos_token_id"] = ids["eos_token_id"] if ids["eos_token_id"] is not None else tokenizer.eos_id
    return {"_from_model_config": True, **{k: v for k, v in ids.items() if v is not None}}


def lit_state_dict(path: Path, config: Config) -> Dict[str, Any]:
    """The model weights of a lit_model.pth (memory-mapped), legacy qkv layout converted, checked against `config`."""
    import torch

    from litgpt.model import GPT, deinterleave_qkv

    state_dict = model_state_dict(load_state_dict(path))
    adapters = [k for k in state_dict if "lora_" in k or "adapter" in k or "gating_factor" in k]
    if adapters:
        raise CheckpointError(f"{path} holds adapter weights ({adapters[0]}); merge them first with `litgpt merge_lora`")
    for name in [k for k in state_dict if ".attn.attn." in k]:  # LitGPT's older per-group interleaved qkv
        state_dict[name.replace(".attn.attn.", ".attn.qkv.")] = deinterleave_qkv(state_dict.pop(name), config)
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in GPT(config).state_dict().items()}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [k for k in expected if k in state_dict and tuple(state_dict[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        what = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected
                else f"{wrong[0]} has shape {tuple(state_dict[wrong[0]].shape)}, expected {expected[wrong[0]]}")
        raise CheckpointError(f"{path} does not match its config ({what})")
    return {k: state_dict[k] for k in expected}


def write_safetensors(
    state_dict: Dict[str, Any], arch: Architecture, config: Config, output_dir: Path, max_bytes: int, skip: Tuple[str, ...] = ()
) -> None:
    """Write the weights under HF names as model.safetensors, or as shards of at most `max_bytes` with an index."""
    import torch
    from tqdm import tqdm

    from litgpt.convert.weights import Translator

    names = [k for k in state_dict if k not in skip]
    # a dry run on the meta device gives every HF name and size, so the shards can be planned before any is written
    plan: List[Tuple[str, int]] = []
    translate = Translator(arch, config, to_lit=False)
    for name in names:
        meta = torch.empty(state_dict[name].shape, dtype=state_dict[name].dtype, device="meta")
        plan += [(hf_name, t.numel() * t.element_size()) for hf_name, t in translate(name, meta)]
    shards: List[List[str]] = [[]]
    size = 0
    for hf_name, nbytes in plan:
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(hf_name)
        size += nbytes
    files = ["model.safetensors"] if len(shards) == 1 else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    shard_of = {hf_name: i for i, shard in enumerate(shards) for hf_name in shard}
    for stale in output_dir.iterdir():  # shards of an earlier conversion would confuse the index
        if SHARD_FILES.fullmatch(stale.name) and stale.name not in files:
            if stale.suffix == ".tmp":
                print(f"Removed {stale}, left by an earlier conversion that did not finish", file=sys.stderr)
            stale.unlink()

    pending: List[Dict[str, Any]] = [{} for _ in shards]
    mode = _new_file_mode()
    translate = Translator(arch, config, to_lit=False)
    for name in tqdm(names, desc=f"Writing {arch.hf_class}", unit="tensor", file=sys.stderr):
        for hf_name, tensor in translate(name, state_dict[name]):
            i = shard_of[hf_name]
            pending[i][hf_name] = _own_storage(tensor)
            if len(pending[i]) == len(shards[i]):
                _write_shard(pending[i], output_dir / files[i], mode)
                pending[i] = {}
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(n for _, n in plan)}, "weight_map": {h: files[shard_of[h]] for h, _ in plan}}
        write_json_atomic(index, output_dir / "model.safetensors.index.json")


def write_model_pth(state_dict: Dict[str, Any], arch: Architecture, config: Config, path: Path) -> None:
    """The weights under HF names (lm_head's too) as one `torch.save` state dict, written a tensor at a time."""
    from litgpt.convert.weights import Translator

    translate = Translator(arch, config, to_lit=False)
    try:
        with incremental_save(path) as saver:
            for name in state_dict:
                for hf_name, tensor in translate(name, state_dict[name]):
                    saver[hf_name] = tensor
    except OSError as e:
        raise CheckpointError(f"Could not write {path}: {str(e).splitlines()[0]} (is the disk full?)") from None


def _write_shard(tensors: Dict[str, Any], path: Path, mode: int) -> None:
    """safetensors to `path.tmp`, renamed onto `path` once whole; a failed write (a full disk) leaves nothing."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.chmod(tmp, mode)  # safetensors creates its files 0600
        tmp.replace(path)
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"Could not write {path}: {str(e).splitlines()[0]} (is the disk full?)") from None
    finally:
        tmp.unlink(missing_ok=True)


def _new_file_mode() -> int:
    """The mode open() gives a new file: 0o666 less the umask (which can only be read by setting it)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _own_storage(tensor: Any) -> Any:
    """safetensors refuses tensors that share memory (q, k and v split from one qkv): give views their own copy."""
    tensor = tensor.contiguous()
    if tensor.storage_offset() or tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        tensor = tensor.clone()
    return tensor


def parse_size(size: Union[int, str]) -> int:
    """Bytes from 5000000, "5GB" (10^9) or "5GiB" (2^30)."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", str(size), re.IGNORECASE)
    if match is None or float(match.group(1)) <= 0:
        raise CheckpointError(f"max_shard_size {size!r} is not a size such as 5GB or 500MB")
    power = " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * (1024 if match.group(3) else 1000) ** power)


def _config(checkpoint_dir: Path, model_name: Optional[str]) -> Config:
    if model_name is not None:
        entry = find_entry(model_name)
        if entry is None:
            raise CheckpointError(f"--model_name {model_name!r} is not a known model name; `litgpt download list` shows them all")
        return Config(**entry)
    try:
        return Config.from_checkpoint(checkpoint_dir)
    except FileNotFoundError as e:
        raise CheckpointError(f"{e}; pass --model_name") from None


def _warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr)
