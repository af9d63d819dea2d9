"""`litgpt convert_pretrained_checkpoint`: a training checkpoint folder -> a plain inference checkpoint folder."""

from pathlib import Path
from typing import Any, Dict

from litgpt.checkpoint import (
    TOKENIZER_FILES,
    CheckpointError,
    copy_tokenizer_files,
    incremental_save,
    load_state_dict,
    model_state_dict,
    read_plain,
    resolve_checkpoint_dir,
)
from litgpt.config import Config, find_entry

EXTRA_FILES = ("prompt_style.yaml",)


def convert_pretrained_checkpoint(checkpoint_dir: Path, output_dir: Path) -> None:
    """Turn a training checkpoint folder into an inference checkpoint folder that holds only the model's weights.

    Args:
        checkpoint_dir: The training checkpoint folder: a lit_model.pth that holds {"model": ..., "optimizer": ...,
            "iter_num": ...} (or a state dict with `_forward_module.`/`_orig_mod.` key prefixes, or a sharded
            checkpoint folder of that name), model_config.yaml (or hyperparameters.yaml naming the model) and the
            tokenizer files.
        output_dir: Where to write lit_model.pth (model weights only), model_config.yaml and the tokenizer files.
    """
    checkpoint_dir, output_dir = resolve_checkpoint_dir(checkpoint_dir), Path(output_dir)
    if not checkpoint_dir.is_dir():
        raise CheckpointError(f"{str(checkpoint_dir)!r} is not a folder")
    if output_dir.resolve() == checkpoint_dir.resolve():
        raise CheckpointError("output_dir must differ from checkpoint_dir, whose lit_model.pth it would replace")
    config = training_config(checkpoint_dir)
    source = checkpoint_dir / "lit_model.pth"
    if source.is_dir():  # a distributed (sharded) checkpoint: a folder of shards with a .metadata file
        state_dict = model_state_dict(_load_distributed(source, output_dir))
    else:
        state_dict = model_state_dict(load_state_dict(source))
    _check_weights(state_dict, config, source)
    output_dir.mkdir(parents=True, exist_ok=True)
    with incremental_save(output_dir / "lit_model.pth") as saver:
        for name, tensor in state_dict.items():
            saver[name] = tensor
    config.save(output_dir / "model_config.yaml")
    copy_tokenizer_files(checkpoint_dir, output_dir, TOKENIZER_FILES + EXTRA_FILES)


def training_config(checkpoint_dir: Path) -> Config:
    """The model's Config: model_config.yaml, else hyperparameters.yaml's `model_config` or `model_name`."""
    if (checkpoint_dir / "model_config.yaml").is_file():
        return Config.from_file(checkpoint_dir / "model_config.yaml")
    hyperparameters = checkpoint_dir / "hyperparameters.yaml"
    if hyperparameters.is_file():
        import yaml

        values: Dict[str, Any] = yaml.safe_load(hyperparameters.read_text(encoding="utf-8")) or {}
        if isinstance(values.get("model_config"), dict):
            return Config(**values["model_config"])
        name = values.get("model_name")
        if name is not None and find_entry(name) is not None:
            return Config.from_name(name)
    raise CheckpointError(f"{checkpoint_dir} has no model_config.yaml, nor a hyperparameters.yaml that names the model")


def _check_weights(state_dict: Dict[str, Any], config: Config, source: Path) -> None:
    import torch

    from litgpt.model import GPT

    with torch.device("meta"):
        model = GPT(config)
    try:  # strict loading on the meta device checks names and shapes without touching the data
        model.load_state_dict({k: v.to("meta") for k, v in state_dict.items()}, strict=True, assign=True)
    except RuntimeError as e:
        first = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise CheckpointError(f"{source} does not fit its model config: {first}") from None


def _load_distributed(folder: Path, scratch_dir: Path) -> Any:
    """A torch.distributed checkpoint folder, gathered into one state dict through a temporary file."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    scratch_dir.mkdir(parents=True, exist_ok=True)
    tmp = scratch_dir / "lit_model.pth.gathered.tmp"
    try:
        dcp_to_torch_save(folder, tmp)
        return read_plain(tmp)
    except Exception as e:
        raise CheckpointError(f"{folder} is not a readable distributed checkpoint: {str(e).splitlines()[0]}") from None
    finally:
        tmp.unlink(missing_ok=True)
