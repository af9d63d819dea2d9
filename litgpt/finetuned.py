"""Reading finetuned folders: LoRA weights merged into base weights, adapters attached.

A finetuned folder holds LitGPT's files: `lit_model.pth.lora` / `lit_model.pth.adapter` /
`lit_model.pth.adapter_v2` next to (or instead of) a `lit_model.pth`, and `hyperparameters.yaml`, whose
`checkpoint_dir` names the base model when the folder has no base weights of its own. What a folder holds is
read from those files and the weights' keys, never from its name.
"""

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

PEFT_FILES = ("lit_model.pth.lora", "lit_model.pth.adapter", "lit_model.pth.adapter_v2")


def assemble(config: Any, base: Dict[str, Any], extra: Dict[str, Any], kind: Optional[str], settings: Dict[str, Any]) -> Any:
    """A GPT with the base weights, transformed by `kind` (lora, adapter) and given `extra` weights; LoRA merged."""
    import torch

    from litgpt.lora import add_lora, merge_lora as fold_lora, plain_key
    from litgpt.model import GPT

    with torch.device("meta"):
        model = GPT(config)
    base = {plain_key(k): v for k, v in base.items() if not _is_peft_key(k)}
    model.load_state_dict(base, strict=False, assign=True)
    missing = [k for k, p in model.state_dict().items() if p.device.type == "meta"]
    if missing:
        raise ValueError(f"The base weights lack {len(missing)} tensors of the model, e.g. {missing[0]}")
    if kind == "lora":
        add_lora(model, **settings)
    elif kind == "adapter":
        from litgpt.adapter import add_adapter

        add_adapter(model, **settings)
    if kind is not None:
        model.load_state_dict(extra, strict=False, assign=True)
        left = [k for k, p in model.state_dict().items() if p.device.type == "meta"]
        if left:
            raise ValueError(f"The {kind} weights lack {len(left)} tensors the model needs, e.g. {left[0]}")
    if kind == "lora":
        # the LoRA factors may be float32 next to bf16 base weights: merge in the base dtype
        for name, param in list(model.named_parameters()):
            param.requires_grad_(False)
        fold_lora(model)
    model.reset_parameters()
    return model


def _is_peft_key(key: str) -> bool:
    return any(s in key for s in ("lora_", "adapter_wte", "gating_factor", "adapter_bias", "adapter_scale"))


def read_hparams(folder: Path) -> Dict[str, Any]:
    import yaml

    path = Path(folder) / "hyperparameters.yaml"
    if not path.is_file():
        return {}
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    return values if isinstance(values, dict) else {}


def base_model_dir(folder: Path, hparams: Dict[str, Any]) -> Path:
    from litgpt.checkpoint import resolve_checkpoint_dir

    base = hparams.get("checkpoint_dir")
    if not base:
        raise FileNotFoundError(
            f"{folder} has no base weights and its hyperparameters.yaml names no checkpoint_dir; pass the base model's folder"
        )
    return resolve_checkpoint_dir(base)


def finetuned_kind(folder: Path) -> Optional[str]:
    """"lora", "adapter" or None (a plain folder), from the files and the weights' keys of `folder`."""
    return _kind(*_peft_state(Path(folder)))


def _kind(peft: Dict[str, Any], plain: Optional[Dict[str, Any]]) -> Optional[str]:
    keys = set(peft)
    # a whole lit_model.pth next to lit_model.pth.lora is the merged model (LitGPT's finetune_lora final/)
    if any("lora_" in k for k in keys) and (plain is None or any("lora_" in k for k in plain)):
        return "lora"
    if any(k.endswith(("adapter_wte.weight", "gating_factor")) for k in keys):
        return "adapter"
    return None


def _peft_state(folder: Path) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """The method's weights (from its file, or from lit_model.pth's keys) and lit_model.pth's plain weights, if whole."""
    from litgpt.checkpoint import load_state_dict, model_state_dict

    peft: Dict[str, Any] = {}
    for name in PEFT_FILES:
        if (folder / name).is_file():
            peft.update(model_state_dict(load_state_dict(folder / name)))
    plain = None
    if (folder / "lit_model.pth").is_file():
        method, plain = _weights_file(folder / "lit_model.pth")
        peft.update(method)
    return peft, plain


def _weights_file(path: Path) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """(the method's weights, the whole weights or None) of one weights file."""
    from litgpt.checkpoint import load_state_dict, model_state_dict

    state = model_state_dict(load_state_dict(path))
    if any(k.startswith("transformer.wte.") for k in state):  # whole weights, maybe with the method's inside
        return {k: v for k, v in state.items() if _is_peft_key(k)}, state
    return state, None  # a training checkpoint of a method saves only what it trains (adapter v2: norms too)


def load_finetuned(folder: Path, device: Any = "cpu", precision: Optional[str] = None, weights: Optional[Path] = None) -> Any:
    """The GPT of a finetuned folder, in eval mode on `device`: LoRA merged in, adapters attached. Base weights
    come from the folder's lit_model.pth, or from the base folder that hyperparameters.yaml names.

    `weights`, a file, replaces the folder's finetuned weights (LoRA or adapter weights), or all of its weights
    when it holds a whole model.
    """
    import torch

    from litgpt.adapter import adapter_settings
    from litgpt.checkpoint import load_state_dict, model_state_dict, precision_dtype
    from litgpt.config import Config
    from litgpt.lora import lora_settings

    folder = Path(folder)
    peft, plain = _peft_state(folder) if weights is None else _weights_file(Path(weights))
    kind = _kind(peft, plain)
    if weights is not None and plain is None:
        if kind is None:
            raise ValueError(f"{weights} holds neither a whole model's weights nor LoRA or adapter weights")
        plain = _weights_file(folder / "lit_model.pth")[1] if (folder / "lit_model.pth").is_file() else None
    hparams = read_hparams(folder)
    if plain is None:
        base_dir = base_model_dir(folder, hparams)
        plain = model_state_dict(load_state_dict(base_dir / "lit_model.pth"))
        config = Config.from_checkpoint(folder if (folder / "model_config.yaml").is_file() else base_dir)
    else:
        config = Config.from_checkpoint(folder)
    settings: Dict[str, Any] = {}
    if kind == "lora":
        peft = {k: v for k, v in peft.items() if "lora_" in k}
        settings = lora_settings(peft, config, hparams)
    elif kind == "adapter":
        settings = adapter_settings(peft)
    model = assemble(config, plain, peft, kind, settings)
    device = torch.device(device)
    return model.to(device=device, dtype=precision_dtype(precision, device)).eval()


def merge_into_base(base_path: Path, lora_path: Path, out_path: Path, config: Any, settings: Dict[str, Any], dtype: Any = None) -> None:
    """Write `out_path`: the plain state dict of the base weights with the LoRA updates of `lora_path` folded in."""
    from litgpt.checkpoint import load_state_dict, model_state_dict, save_state_dict_atomic
    from litgpt.lora import lora_filter

    base = model_state_dict(load_state_dict(base_path))
    lora = {k: v for k, v in model_state_dict(load_state_dict(lora_path)).items() if lora_filter(k)}
    model = assemble(config, base, lora, "lora", settings)
    state = {k: v.detach().to("cpu", dtype=dtype if dtype is not None and v.is_floating_point() else v.dtype) for k, v in model.state_dict().items()}
    save_state_dict_atomic(state, out_path)
