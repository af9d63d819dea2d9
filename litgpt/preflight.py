"""Checks before a run, from Python (`from litgpt import validate_checkpoint, estimate_model_memory`, as in LitGPT):
does a checkpoint file fit a model, and about how much memory does a model need.

    result = validate_checkpoint("checkpoints/org/name/lit_model.pth", model)   # a CheckpointValidationResult
    estimate_model_memory(config, dtype="bfloat16", training=True)["estimated_total_gb"]

The file is read as `litgpt validate` and the loaders read it (`litgpt.checkpoint.read_plain`: tensors only, never
unpickled), and the parameters are counted on the model itself, built on the meta device.
"""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SHOWN = 10  # keys listed per kind in a summary


@dataclass
class CheckpointValidationResult:
    """What `validate_checkpoint` found: valid when the file loads and its keys and shapes are the model's."""

    is_valid: bool
    missing_keys: List[str]
    unexpected_keys: List[str]
    shape_mismatches: List[str]
    errors: List[str]

    def summary(self) -> str:
        """A few lines for people: passed, or what is wrong (the first ten keys of each kind)."""
        if self.is_valid:
            return "Checkpoint validation passed."
        lines = ["Checkpoint validation failed:"]
        if self.errors:
            lines.append(f"  Errors: {'; '.join(self.errors)}")
        for title, keys in (("Missing keys", self.missing_keys), ("Unexpected keys", self.unexpected_keys)):
            if keys:
                more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
                lines.append(f"  {title} ({len(keys)}): {', '.join(keys[:SHOWN])}{more}")
        if self.shape_mismatches:
            lines.append(f"  Shape mismatches ({len(self.shape_mismatches)}):")
            lines.extend(f"    {m}" for m in self.shape_mismatches[:SHOWN])
            if len(self.shape_mismatches) > SHOWN:
                lines.append(f"    and {len(self.shape_mismatches) - SHOWN} more")
        return "\n".join(lines)


def validate_checkpoint(checkpoint_path: Union[str, Path], model: torch.nn.Module, verbose: bool = True) -> CheckpointValidationResult:
    """Compare a checkpoint file's weights with `model`'s (which may live on the meta device) without loading them.

    Args:
        checkpoint_path: a `.pth` file: a state dict, or a training checkpoint holding one under "model".
        model: the model to compare with (its `state_dict()` keys and shapes).
        verbose: print the result's summary to stderr.
    """
    from litgpt.checkpoint import CheckpointError, model_state_dict, read_plain

    path = Path(checkpoint_path)
    errors: List[str] = []
    missing: List[str] = []
    unexpected: List[str] = []
    mismatches: List[str] = []
    if not path.is_file():
        errors.append(f"Checkpoint file not found: {path}")
    else:
        try:
            weights = model_state_dict(read_plain(path, mmap=True))
        except CheckpointError as error:
            errors.append(str(error))
        else:
            expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
            # a non-tensor entry has no shape to compare
            found = {key: tuple(getattr(value, "shape", expected.get(key, ()))) for key, value in weights.items()}
            missing, unexpected, different = compare_shapes(expected, found)
            mismatches = [f"{key}: model={want}, checkpoint={have}" for key, want, have in different]
    valid = not (errors or missing or unexpected or mismatches)
    result = CheckpointValidationResult(valid, missing, unexpected, mismatches, errors)
    if verbose:
        print(result.summary(), file=sys.stderr)
    return result


def estimate_model_memory(config: Any, dtype: Union[str, torch.dtype] = torch.float32, training: bool = False) -> Dict[str, Any]:
    """A lower bound on the memory a model needs: its weights, times 4 for training with Adam (weights, gradients,
    two optimizer states). Activations, the KV cache and framework overhead come on top.

    Args:
        config: the model's `Config`.
        dtype: the weights' dtype: a torch dtype, or "float32", "float16", "bfloat16".
        training: count gradients and Adam's two states as well.

    Returns:
        {"param_count", "param_memory_gb", "estimated_total_gb", "available_gpu_memory_gb", "fits_in_memory"}; sizes
        in GiB rounded to 0.01; the last two compare with the first CUDA GPU and are None without one.
    """
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)} (or pass a torch.dtype)")
        dtype = DTYPES[dtype]
    param_count = parameter_count(config)
    gib = 1024**3
    param_gb = param_count * dtype.itemsize / gib
    total_gb = param_gb * (4 if training else 1)
    available_gb = torch.cuda.get_device_properties(0).total_memory / gib if torch.cuda.is_available() else None
    return {
        "param_count": param_count,
        "param_memory_gb": round(param_gb, 2),
        "estimated_total_gb": round(total_gb, 2),
        "available_gpu_memory_gb": None if available_gb is None else round(available_gb, 2),
        "fits_in_memory": None if available_gb is None else total_gb < available_gb,
    }


def compare_shapes(expected: Dict[str, Tuple[int, ...]], found: Dict[str, Tuple[int, ...]]) -> Tuple[List[str], List[str], List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]]:
    """The keys `found` lacks, those it has over `expected`, and (key, expected shape, found shape) where they differ."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    different = [(key, expected[key], found[key]) for key in sorted(set(expected) & set(found)) if expected[key] != found[key]]
    return missing, unexpected, different


def parameter_count(config: Any) -> int:
    """The parameters of `GPT(config)`, counted on the model built on the meta device (no memory)."""
    from litgpt.model import GPT

    with torch.device("meta"):
        return sum(p.numel() for p in GPT(config).parameters())
