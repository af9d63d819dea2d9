"""Which devices a multi-device command runs on: `--accelerator` and `--devices` turned into a list of torch devices."""

from typing import List, Literal, Union

Accelerator = Literal["auto", "cuda", "cpu"]
Devices = Union[int, Literal["auto"]]


def resolve_accelerator(accelerator: str) -> str:
    """The device type one model copy runs on: "cuda", "mps" or "cpu" ("auto": the first available; "gpu" is
    "cuda"). Raises ValueError for another name, or for "cuda" without a visible GPU."""
    import torch

    accelerator = {"gpu": "cuda"}.get(accelerator, accelerator)
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if accelerator not in ("cpu", "cuda", "mps"):
        raise ValueError(f"accelerator must be auto, cpu, cuda, gpu or mps, got {accelerator!r}")
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise ValueError("accelerator='cuda' was asked for, but no CUDA GPU is available")
    return accelerator


def pick_devices(accelerator: Accelerator = "auto", devices: Devices = "auto") -> List["torch.device"]:
    """`devices` GPUs (cuda:0, cuda:1, ...; "auto" is every visible one), or `devices` pieces on the CPU.

    The CPU form runs the same code on one machine without GPUs (for tests and trying a setup out); "auto" is
    one piece there. Raises ValueError for a count that is not there.
    """
    import torch

    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator not in ("cuda", "cpu"):
        raise ValueError(f"accelerator must be auto, cuda or cpu, got {accelerator!r}")
    if devices != "auto" and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
        raise ValueError(f"devices must be a positive number of devices or 'auto', got {devices!r}")
    if accelerator == "cpu":
        return [torch.device("cpu")] * (1 if devices == "auto" else devices)
    available = torch.cuda.device_count()
    if available == 0:
        raise ValueError("accelerator='cuda' was asked for, but no CUDA GPU is visible")
    count = available if devices == "auto" else devices
    if count > available:
        raise ValueError(f"devices={count} was asked for, but only {available} CUDA GPU(s) are visible")
    return [torch.device("cuda", i) for i in range(count)]
