"""`litgpt convert_to_litgpt`: a Hugging Face checkpoint folder -> `lit_model.pth` and `model_config.yaml` beside it."""

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from litgpt.checkpoint import (
    CheckpointError,
    count_hf_tensors,
    hf_weight_files,
    incremental_save,
    iter_hf_weights,
    parse_dtype,
    read_json,
)
from litgpt.config import Config, find_entry
from litgpt.convert.architectures import Architecture, find_architecture
from litgpt.convert.hf_config import SHAPE_FIELDS, config_from_hf, differences, text_part

# buffers that some HF checkpoints store although they are computed, not learned
IGNORED_SUFFIXES = (".rotary_emb.inv_freq", ".attention.bias", ".attention.masked_bias")


def convert_to_litgpt(
    checkpoint_dir: Path, *, model_name: Optional[str] = None, dtype: Optional[str] = None, debug_mode: Optional[bool] = False
) -> None:
    """Convert a Hugging Face checkpoint folder to LitGPT's format: lit_model.pth and model_config.yaml in the same folder.

    Args:
        checkpoint_dir: The folder with config.json and the weights (model.safetensors or pytorch_model.bin, either
            possibly sharded with its index .json).
        model_name: The registry name whose config to use. By default the registry entry named like the folder
            (or like config.json's `_name_or_path`), else a config derived from config.json.
        dtype: Store the weights in this dtype: bf16, fp16 or fp32 (torch names such as bfloat16 work too).
            By default they keep the checkpoint's dtype.
        debug_mode: Instead of a progress bar, print each tensor as it is read and what it becomes (name, shape,
            dtype): useful when a new model does not convert.
    """
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise CheckpointError(f"{str(checkpoint_dir)!r} is not a folder")
    torch_dtype = parse_dtype(dtype)
    config_json = checkpoint_dir / "config.json"
    hf_config = read_json(config_json) if config_json.is_file() else None
    config, arch = resolve_config(checkpoint_dir, hf_config, model_name)
    files = hf_weight_files(checkpoint_dir)
    tie = _ties_embeddings(hf_config, arch)
    convert_weights(
        files, arch, config, checkpoint_dir / "lit_model.pth", dtype=torch_dtype, tie_embeddings=tie, debug=bool(debug_mode)
    )
    config.save(checkpoint_dir / "model_config.yaml")


def resolve_config(checkpoint_dir: Path, hf_config: Optional[Dict[str, Any]], model_name: Optional[str]) -> Tuple[Config, Architecture]:
    """The Config to convert with, and the HF architecture the weights are named by.

    An explicit `model_name` must be in the registry and fit config.json's shapes. Otherwise a registry entry
    named like the folder is used when it fits, else the config derived from config.json.
    """
    arch = find_architecture(hf_config) if hf_config is not None else None
    entry = find_entry(model_name) if model_name is not None else None
    if model_name is not None and entry is None:
        raise CheckpointError(f"--model_name {model_name!r} is not a known model name; `litgpt download list` shows them all")
    if entry is None:
        entry = next(filter(None, map(find_entry, _candidate_names(checkpoint_dir, hf_config))), None)
    derived = None
    if arch is not None:
        try:
            derived = config_from_hf(hf_config, arch, name=checkpoint_dir.name, hf_config=_hf_name(checkpoint_dir, hf_config))
        except CheckpointError as e:
            if entry is None:
                raise
            # LitGPT's registry holds a few models whose config.json we cannot fully express (Phi-3's longrope)
            _warn(f"{e}; using the registry entry {entry['name']!r} as it is")
    if model_name is not None:
        config = Config(**entry)
        mismatch = differences(config, derived, SHAPE_FIELDS) if derived is not None else []
        if mismatch:
            raise CheckpointError(f"--model_name {model_name!r} does not fit this checkpoint's config.json ({mismatch[0]})")
    else:
        config = derived if entry is None else Config(**entry)
        if config is None:
            raise CheckpointError(
                f"{checkpoint_dir} has no config.json and its name is not a known model; pass --model_name"
            )
        if entry is not None and derived is not None:
            mismatch = differences(config, derived)
            if any(m.split(":")[0] in SHAPE_FIELDS for m in mismatch):
                _warn(f"the registry entry {config.name!r} does not fit config.json ({mismatch[0]}); using config.json")
                config = derived
            elif config.rope_adjustments is None and derived.rope_adjustments is not None:
                # LitGPT's entries for LongRoPE models (Phi-3.5-mini, Phi-4-mini) leave out the scaling (and with it
                # the context it reaches)
                _warn(f"the registry entry {config.name!r} has no RoPE scaling; using config.json's ({derived.rope_scaling})")
                config = Config(**{**entry, "rope_adjustments": derived.rope_adjustments, "block_size": derived.block_size})
            elif mismatch:
                _warn(f"the registry entry {config.name!r} differs from config.json ({'; '.join(mismatch)}); using the registry")
    if arch is None:
        from litgpt.convert.lit_to_hf import export_architecture

        arch = export_architecture(config)[0]
    return config, arch


def convert_weights(
    files: List[Path], arch: Architecture, config: Config, out_path: Path, dtype: Any = None,
    tie_embeddings: Optional[bool] = None, debug: bool = False,
) -> None:
    """Stream the HF tensors of `files` into `out_path` with our names; one tensor (or one layer's q, k, v) in memory at a time.

    Args:
        tie_embeddings: lm_head reuses the input embedding (HF's `tie_word_embeddings`); None: when lm_head is absent.
        debug: print every tensor read and written instead of showing a progress bar.
    """
    import torch
    from tqdm import tqdm

    from litgpt.convert.weights import Translator
    from litgpt.model import GPT

    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in GPT(config).state_dict().items()}
    translate = Translator(arch, config, to_lit=True)
    with incremental_save(out_path) as saver, tqdm(
        total=count_hf_tensors(files), desc=f"Converting {arch.hf_class}", unit="tensor", file=sys.stderr, disable=debug
    ) as progress:
        for hf_name, tensor in iter_hf_weights(files):
            progress.update()
            if debug:
                print(f"Read {hf_name} {list(tensor.shape)} {_dtype_name(tensor.dtype)}", flush=True)
            hf_name = _rename(hf_name, arch)
            if hf_name is None or (tie_embeddings and hf_name == "lm_head.weight"):
                continue
            for name, converted in translate(hf_name, tensor):
                if name not in expected:
                    raise CheckpointError(f"{hf_name!r} maps to {name!r}, which this config's model does not have")
                if tuple(converted.shape) != expected[name]:
                    raise CheckpointError(
                        f"{hf_name!r} has shape {tuple(tensor.shape)}, but the config needs {expected[name]} for {name!r}"
                    )
                stored = converted if dtype is None else converted.to(dtype)
                saver[name] = stored
                if debug:
                    cast = f" (from {_dtype_name(converted.dtype)})" if stored.dtype != converted.dtype else ""
                    print(f"  wrote {name} {list(stored.shape)} {_dtype_name(stored.dtype)}{cast}", flush=True)
            del tensor
        translate.finish()
        if tie_embeddings is None:
            tie_embeddings = "lm_head.weight" not in saver.state_dict
        if tie_embeddings and "transformer.wte.weight" in saver.state_dict:
            saver["lm_head.weight"] = saver.state_dict["transformer.wte.weight"]
        missing = [name for name in expected if name not in saver.state_dict]
        if missing:
            raise CheckpointError(f"the checkpoint lacks {len(missing)} weights, e.g. {', '.join(missing[:3])}")
        saver.state_dict = {name: saver.state_dict[name] for name in expected}


def _rename(name: str, arch: Architecture) -> Optional[str]:
    """The HF name as the architecture's table spells it, or None for weights that are not converted."""
    if name.endswith(IGNORED_SUFFIXES) or name.startswith(arch.ignore):
        return None
    for prefix, replacement in arch.prefixes.items():
        if name.startswith(prefix):
            return replacement + name[len(prefix) :]
    return name


def _ties_embeddings(hf_config: Optional[Dict[str, Any]], arch: Architecture) -> Optional[bool]:
    """Whether HF reuses the input embedding as the output layer (then lm_head.weight is absent or ignored)."""
    if hf_config is None:
        return None
    hf = {**arch.hf_defaults, **text_part(hf_config, arch)}
    return bool(hf.get("tie_word_embeddings", True))  # transformers' default


def _candidate_names(checkpoint_dir: Path, hf_config: Optional[Dict[str, Any]]) -> List[str]:
    names = [f"{checkpoint_dir.parent.name}/{checkpoint_dir.name}", checkpoint_dir.name]
    source = (hf_config or {}).get("_name_or_path")
    if isinstance(source, str) and source.count("/") == 1 and not Path(source).is_absolute():
        names.insert(0, source)
    return names


def _hf_name(checkpoint_dir: Path, hf_config: Dict[str, Any]) -> Dict[str, str]:
    source = hf_config.get("_name_or_path")
    if isinstance(source, str) and source.count("/") == 1 and not Path(source).is_absolute():
        org, name = source.split("/")
        return {"org": org, "name": name}
    return {"org": checkpoint_dir.parent.name, "name": checkpoint_dir.name}


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def _warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr)
