"""Argument groups shared by every training command (`--train.*`, `--eval.*`, `--log.*`), with LitGPT's names."""

import math
from importlib import import_module
from inspect import signature
from dataclasses import dataclass, fields, is_dataclass
from pathlib import PurePath
from typing import Any, Dict, Optional, Tuple, Union


@dataclass
class TrainArgs:
    """How long and how to train: batch sizes, schedule, stopping rules, checkpoints (`--train.*`)."""

    save_interval: Optional[int] = 1000
    """Optimizer steps between checkpoints (unset: only the final one)"""
    log_interval: int = 1
    """Optimizer steps between log lines"""
    global_batch_size: int = 64
    """Samples per optimizer step, all processes together"""
    micro_batch_size: int = 4
    """Samples per forward/backward pass on each process"""
    lr_warmup_steps: Optional[int] = 100
    """Optimizer steps over which the learning rate rises linearly from zero"""
    lr_warmup_fraction: Optional[float] = None
    """Warm up over this fraction of the first epoch instead"""
    epochs: Optional[int] = None
    """Passes over the training set"""
    max_tokens: Optional[int] = None
    """Stop after this many training tokens, all processes together"""
    max_steps: Optional[int] = None
    """Stop after this many optimizer steps"""
    max_time: Optional[float] = None
    """Stop after this many seconds of training"""
    max_seq_length: Optional[int] = None
    """Cut samples to at most this many tokens"""
    tie_embeddings: Optional[bool] = None
    """Share one weight matrix between the token embedding and the output head"""
    max_norm: Optional[float] = None
    """Clip gradients to this global norm (no clipping if unset)"""
    min_lr: float = 6e-5
    """The learning rate at the end of the cosine decay (pretraining only: finetuning decays to 0, as LitGPT's)"""

    def __post_init__(self) -> None:
        # the numbers are checked by litgpt.settings_check when a command starts (so `litgpt validate` can list
        # every problem at once); two flags that exclude each other are refused here
        if self.lr_warmup_fraction and self.lr_warmup_steps:
            raise ValueError("Give either --train.lr_warmup_fraction or --train.lr_warmup_steps, not both")

    def batch_size(self, world_size: int) -> int:
        """Samples per optimizer step on each data-parallel rank."""
        size = self.global_batch_size // world_size
        if size < self.micro_batch_size:
            raise ValueError(
                f"--train.global_batch_size ({self.global_batch_size}) split over {world_size} processes is less "
                f"than --train.micro_batch_size ({self.micro_batch_size})"
            )
        return size

    def gradient_accumulation_iters(self, world_size: int) -> int:
        """Micro-batches per optimizer step on each rank."""
        return self.batch_size(world_size) // self.micro_batch_size

    def warmup_iters(self, world_size: int, max_iters: int, iters_per_epoch: Optional[int]) -> int:
        """Micro-batches with the learning rate warming up."""
        if self.lr_warmup_fraction:
            if iters_per_epoch is None:
                raise ValueError("--train.lr_warmup_fraction needs a training set of known length")
            return min(max_iters, math.ceil(self.lr_warmup_fraction * iters_per_epoch))
        if self.lr_warmup_steps:
            return min(max_iters, self.lr_warmup_steps * self.gradient_accumulation_iters(world_size))
        return 0


@dataclass
class EvalArgs:
    """When and how much to validate (`--eval.*`)."""

    interval: int = 600
    """Optimizer steps between validations"""
    max_new_tokens: Optional[int] = None
    """Tokens to generate for the sample shown at each validation (finetuning)"""
    max_iters: int = 100
    """Batches per validation"""
    initial_validation: bool = False
    """Validate before the first step"""
    final_validation: bool = True
    """Validate after the last step"""
    evaluate_example: Union[str, int] = "first"
    """Which validation instruction to generate from at each validation: "first", "random" or an index (finetuning)"""

    def __post_init__(self) -> None:
        if isinstance(self.evaluate_example, str) and self.evaluate_example not in ("first", "random"):
            raise ValueError(f"--eval.evaluate_example must be 'first', 'random' or an index, got {self.evaluate_example!r}")


@dataclass
class LogArgs:
    """Settings of the experiment trackers (`--log.*`); each logger reads its own fields."""

    project: Optional[str] = None
    """wandb: the project"""
    run: Optional[str] = None
    """wandb: the run's name (default: a generated one)"""
    group: Optional[str] = None
    """wandb: the group"""
    teamspace: Optional[str] = None
    """litlogger: the teamspace that shows the charts"""
    metadata: Optional[Dict] = None
    """litlogger: tags for the experiment"""
    log_model: bool = False
    """litlogger: upload checkpoints as artifacts"""
    save_logs: bool = True
    """litlogger: upload the terminal output"""
    checkpoint_name: Optional[str] = None
    """litlogger: the name of uploaded checkpoints"""


def to_yaml_value(value: Any) -> Any:
    """A value as a `--config` YAML file writes it: argument groups and configs as mappings, data modules as
    {class_path, init_args}, paths as strings; so a run's hyperparameters.yaml can start the same run again."""
    from litgpt.data.base import DataModule, data_class

    if isinstance(value, DataModule):
        cls = data_class(value)
        import litgpt.data

        module = "litgpt.data" if getattr(litgpt.data, cls.__name__, None) is cls else cls.__module__
        init_args = {f.name: to_yaml_value(getattr(value, f.name)) for f in fields(value) if f.init} if is_dataclass(value) else {}
        return {"class_path": f"{module}.{cls.__name__}", "init_args": init_args}
    if hasattr(value, "to_dict"):  # Config
        return to_yaml_value(value.to_dict())
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_yaml_value(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_yaml_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_yaml_value(v) for v in value]
    return value


OPTIMIZER_MODULES = ("torch.optim", "bitsandbytes.optim", "torchao.optim")


def resolve_optimizer(spec: Union[str, Dict]) -> Tuple[type, Dict[str, Any]]:
    """The optimizer class and its keyword arguments: a name ("AdamW", "torch.optim.SGD") or
    {"class_path": ..., "init_args": {...}}."""
    import torch

    if isinstance(spec, str):
        class_path, init_args = spec, {}
    elif isinstance(spec, dict):
        unknown = set(spec) - {"class_path", "init_args"}
        if "class_path" not in spec or unknown:
            raise ValueError(f"--optimizer takes a name or {{class_path, init_args}}, got keys {sorted(spec)}")
        class_path, init_args = spec["class_path"], dict(spec.get("init_args") or {})
    else:
        raise ValueError(f"--optimizer takes a name or {{class_path, init_args}}, got {spec!r}")
    module_name, _, class_name = class_path.rpartition(".")
    module_name = module_name or "torch.optim"
    if not any(module_name == m or module_name.startswith(m + ".") for m in OPTIMIZER_MODULES):
        # a recipe or a run's hyperparameters.yaml may come from anyone: import only optimizer packages
        raise ValueError(f"--optimizer {class_path!r}: optimizers are taken from {', '.join(OPTIMIZER_MODULES)} only")
    try:
        cls = getattr(import_module(module_name), class_name, None)
    except ImportError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"--optimizer {class_path!r} is not an optimizer class (try AdamW or torch.optim.SGD)")
    accepted = set(signature(cls).parameters)
    unknown = set(init_args) - accepted
    if unknown:
        raise ValueError(f"{cls.__name__} takes no argument(s) {', '.join(sorted(unknown))}")
    return cls, init_args
