"""`litgpt merge_lora`: fold a finetuned folder's LoRA weights into its base model's weights."""

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from litgpt.finetuned import base_model_dir, merge_into_base, read_hparams

def merge_lora(checkpoint_dir: Path, pretrained_checkpoint_dir: Optional[Path] = None, precision: Optional[str] = None) -> None:
    """Merge the LoRA weights of a finetuned folder into its base model's weights, writing `lit_model.pth` there.

    Args:
        checkpoint_dir: The folder with `lit_model.pth.lora` and `hyperparameters.yaml` (e.g. out/finetune/lora/final).
        pretrained_checkpoint_dir: The base model's folder; default: `checkpoint_dir` of hyperparameters.yaml.
        precision: The dtype of the merged weights (bf16-true, 16-true, 32-true); default: the base weights' dtype.
    """
    from litgpt.checkpoint import copy_tokenizer_files, parse_dtype, resolve_checkpoint_dir
    from litgpt.config import Config

    checkpoint_dir = resolve_checkpoint_dir(checkpoint_dir)
    lora_path = checkpoint_dir / "lit_model.pth.lora"
    from_state = not lora_path.is_file()
    if from_state:
        _lora_from_training_state(checkpoint_dir)
    hparams = read_hparams(checkpoint_dir)
    base_dir = Path(pretrained_checkpoint_dir) if pretrained_checkpoint_dir is not None else base_model_dir(checkpoint_dir, hparams)
    if not (base_dir / "lit_model.pth").is_file():
        raise FileNotFoundError(f"No lit_model.pth in the base model folder {str(base_dir)!r}; pass --pretrained_checkpoint_dir")
    dtype = parse_dtype(precision)
    if not from_state and (checkpoint_dir / "lit_model.pth").is_file() and (checkpoint_dir / "lit_model.pth").resolve() != (base_dir / "lit_model.pth").resolve():
        print(f"{checkpoint_dir / 'lit_model.pth'} exists; it is replaced by the merged weights")
    config_dir = checkpoint_dir if (checkpoint_dir / "model_config.yaml").is_file() else base_dir
    config = Config.from_checkpoint(config_dir)
    from litgpt.checkpoint import load_state_dict, model_state_dict
    from litgpt.lora import lora_settings

    lora_sd = model_state_dict(load_state_dict(lora_path))
    merge_into_base(base_dir / "lit_model.pth", lora_path, checkpoint_dir / "lit_model.pth", config, lora_settings(lora_sd, config, hparams), dtype)
    copy_tokenizer_files(base_dir, checkpoint_dir, tuple(n for n in _folder_names() if not (checkpoint_dir / n).is_file()))
    if not (checkpoint_dir / "model_config.yaml").is_file():
        config.save(checkpoint_dir / "model_config.yaml")
    print(f"Saved the merged weights to {checkpoint_dir / 'lit_model.pth'}")


def _lora_from_training_state(folder: Path) -> None:
    """A step-* folder of a LoRA run keeps its LoRA weights inside lit_model.pth, the training state that --resume
    reads: write them out as lit_model.pth.lora, which the merge then reads (its output replaces that state)."""
    from litgpt.checkpoint import load_state_dict, model_state_dict, save_state_dict_atomic
    from litgpt.lora import lora_filter

    path = folder / "lit_model.pth"
    state = model_state_dict(load_state_dict(path)) if path.is_file() else {}
    lora = {k: v for k, v in state.items() if lora_filter(k)}
    if not lora or any(k.startswith("transformer.wte.") for k in state):  # no LoRA, or whole (merged) weights
        raise FileNotFoundError(f"No lit_model.pth.lora in {str(folder)!r}: nothing to merge")
    save_state_dict_atomic(lora, folder / "lit_model.pth.lora")
    print(f"{path} was this step's training state (for --resume); its LoRA weights are now in lit_model.pth.lora, and "
          "the merged weights replace it (resume from another step)")


def _folder_names() -> Tuple[str, ...]:
    from litgpt.checkpoint import TOKENIZER_FILES

    return TOKENIZER_FILES
