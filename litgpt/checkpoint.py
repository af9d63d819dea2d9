"""Reading and writing checkpoint folders (lit_model.pth, model_config.yaml, tokenizer files).

NOTE for the convert helper: this file was started by the integrator with `resolve_checkpoint_dir` and
`load_model`; keep both (same signatures) when you add your functions here.
"""

from pathlib import Path
from typing import Optional, Union

PRECISIONS = {"bf16-true": "bfloat16", "bf16-mixed": "bfloat16", "16-true": "float16", "16-mixed": "float16", "32-true": "float32", "32": "float32"}


def resolve_checkpoint_dir(checkpoint_dir: Union[str, Path]) -> Path:
    """The folder itself if it exists, else checkpoints/ORG/NAME for a bare `ORG/NAME`."""
    path = Path(checkpoint_dir)
    if path.is_dir():
        return path
    candidate = Path("checkpoints") / path
    if not path.is_absolute() and candidate.is_dir():
        return candidate
    raise FileNotFoundError(
        f"No checkpoint folder at {str(path)!r}" + ("" if path.is_absolute() else f" nor {str(candidate)!r}")
        + "; download one with `litgpt download ORG/NAME`"
    )


def precision_dtype(precision: Optional[str], device: "torch.device") -> "torch.dtype":
    """The weights' dtype for a Lightning precision name; None picks bf16 on GPUs that have it, else fp32."""
    import torch

    if precision is None:
        use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if use_bf16 else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return getattr(torch, PRECISIONS[precision])


def load_model(
    checkpoint_dir: Path, device: Union[str, "torch.device"] = "cpu", precision: Optional[str] = None
) -> "GPT":
    """Build the GPT of a checkpoint folder and load `lit_model.pth` into it, in eval mode, on `device`."""
    import torch

    from litgpt.config import Config
    from litgpt.model import GPT

    device = torch.device(device)
    weights = Path(checkpoint_dir) / "lit_model.pth"
    if not weights.is_file():
        raise FileNotFoundError(f"No lit_model.pth in {str(checkpoint_dir)!r}; convert a Hugging Face folder with `litgpt convert_to_litgpt`")
    config = Config.from_checkpoint(checkpoint_dir)
    with torch.device("meta"):
        model = GPT(config)
    state_dict = torch.load(weights, map_location="cpu", mmap=True, weights_only=True)
    state_dict = state_dict.get("model", state_dict)
    model.load_state_dict(state_dict, assign=True)
    model.reset_parameters()  # the RoPE cache was built on the meta device
    return model.to(device=device, dtype=precision_dtype(precision, device)).eval()
