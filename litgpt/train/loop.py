"""The one training loop. Pretraining and every finetuning method run through `fit`; a command only decides
the model, the data and the `Method`, and checks its flags before any work.

    command (pretrain, finetune_*)                     this module
    ──────────────────────────────                     ─────────────────────────────────────────────
    check flags (check_train, resolve_resume, ...)     make_fabric: devices, DDP/FSDP, precision
    build the GPT, initialise or load weights     ──►  fit: Method.transform → requires_grad → Fabric
    pick a Method: what trains, what is saved          → optimizer → data → resume → optimizer steps
                                                       (accumulation, clipping, warmup + cosine lr)
                                                       → validation (+ sample) → logs → step-*/ → final/

A checkpoint is named as LitGPT names it, by the optimizer step: `out_dir/step-XXXXXXXX/` in pretraining,
`out_dir/step-XXXXXX/` in finetuning. It holds the training state (model, optimizer, counters, data-loader
position, loss history) in `lit_model.pth` where LitGPT keeps it there (pretraining, full finetuning), else in
`training_state.pth` beside the method's weights as LitGPT writes them (`lit_model.pth.lora`, `.adapter`,
`.adapter_v2`: {"model": what the method trains}); one `rng-<rank>.pt` per process, and the folder files
(`model_config.yaml`, tokenizer files, `prompt_style.yaml`, `hyperparameters.yaml`). It is written to a hidden
temporary folder and renamed into place,
so a killed run never leaves a half-written checkpoint, and `--resume auto` continues exactly where the
latest one was taken.
"""

import math
import os
import pickle
import random
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from inspect import signature
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Literal, Optional, Sequence, Tuple, Union

from litgpt.checkpoint import copy_tokenizer_files
from litgpt.config import Config
from litgpt.train.args import EvalArgs, TrainArgs, resolve_optimizer  # noqa: F401 (commands call loop.resolve_optimizer)

if TYPE_CHECKING:
    import torch
    from lightning import Fabric

    from litgpt.data.base import DataModule

ResumeArg = Union[bool, Literal["auto"], Path]


@dataclass
class Method:
    """Full training: the plain model, every parameter trained and saved. Finetuning methods (LoRA,
    adapters) subclass it and override the hooks; the loop asks nothing else of them."""

    name: str = "full"
    weights_file: str = "lit_model.pth"
    """The file of `final/` that holds what `is_saved` selects"""
    base_weights: Optional[Path] = None
    """The base model's lit_model.pth (finetuning): LoRA merges its weights into it in final/, the adapters link it there"""
    pretraining: bool = False
    """LitGPT's pretraining contract (warmup, then cosine decay to --train.min_lr over the micro-batches;
    step-XXXXXXXX/ folders) instead of its finetuning one (warmup, then cosine decay to 0 over the optimizer steps;
    step-XXXXXX/ folders)"""

    @property
    def state_file(self) -> str:
        """The file of a step folder that holds the training state (--resume reads it): LitGPT's lit_model.pth where
        that is the state (pretraining, full finetuning), else a file of ours beside the method's weights file."""
        return "lit_model.pth" if self.weights_file == "lit_model.pth" else "training_state.pth"

    def step_folder(self, step: int) -> str:
        """The name of the checkpoint folder after optimizer step `step`, as LitGPT names it."""
        return f"step-{step:08d}" if self.pretraining else f"step-{step:06d}"

    def transform(self, model: Any) -> Any:
        """Change the plain model before training (e.g. add LoRA layers); called before Fabric wraps it."""
        return model

    def is_trainable(self, name: str) -> bool:
        """Whether the parameter `name` trains."""
        return True

    def is_saved(self, name: str) -> bool:
        """Whether the state-dict entry `name` goes into checkpoints (enough to resume, given the base model)."""
        return True

    def finish(self, fabric: "Fabric", model: Any, folder: Path) -> None:
        """Write anything else `final/` needs (e.g. merged weights); runs on every process."""

    def loss(self, model: Any, batch: Any, seq_len: int, ignore_index: int) -> "torch.Tensor":
        """The loss of one micro-batch, in training and validation (DPO overrides it): next-token cross-entropy."""
        return next_token_loss(model, batch, seq_len, ignore_index)

    def metrics(self, fabric: "Fabric") -> Dict[str, float]:
        """Numbers of the method's own for the log line, over the micro-batches since the last call."""
        return {}


@dataclass
class FolderFiles:
    """The files besides the weights that make a folder a checkpoint that `litgpt generate` and finetuning read."""

    config: Config
    tokenizer_dir: Optional[Path] = None
    hparams: Dict[str, Any] = field(default_factory=dict)
    prompt_style: Optional[Any] = None
    """The data's PromptStyle (finetuning), saved as prompt_style.yaml; a chat template travels with the tokenizer files"""

    def write(self, folder: Path) -> None:
        import yaml

        from litgpt.prompts import ChatTemplate, save_prompt_style

        self.config.save(folder / "model_config.yaml")
        if self.tokenizer_dir is not None:
            copy_tokenizer_files(self.tokenizer_dir, folder)
        if self.prompt_style is not None and not isinstance(self.prompt_style, ChatTemplate):
            save_prompt_style(self.prompt_style, folder)
        if self.hparams:
            (folder / "hyperparameters.yaml").write_text(yaml.safe_dump(self.hparams, sort_keys=False), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# checks and choices made before any work


def check_train(train: TrainArgs, eval: EvalArgs, world_size: int) -> int:
    """Raise on settings the loop cannot honour; returns the micro-batches per optimizer step."""
    if not (train.max_steps or train.max_tokens or train.epochs):
        raise ValueError("Say how long to train: set --train.max_steps, --train.max_tokens or --train.epochs")
    accum = train.gradient_accumulation_iters(world_size)
    effective = accum * train.micro_batch_size * world_size
    if effective != train.global_batch_size:
        # LitGPT's recipes rely on rounding down (e.g. 125 samples on 8 GPUs), so round, and say so
        warnings.warn(
            f"--train.global_batch_size {train.global_batch_size} is not a multiple of micro_batch_size x processes "
            f"({train.micro_batch_size} x {world_size}); each optimizer step takes {effective} samples"
        )
    return accum


def parse_devices(devices: Union[int, str]) -> int:
    """The number of devices per node: 'auto' is every GPU (or one CPU process)."""
    import torch

    if devices in ("auto", -1, "-1"):
        return torch.cuda.device_count() or 1
    try:
        count = int(devices)
    except ValueError:
        raise ValueError(f"--devices must be a number or 'auto', got {devices!r}") from None
    if count < 1:
        raise ValueError(f"--devices must be at least 1, got {count}")
    if torch.cuda.is_available() and count > torch.cuda.device_count():
        raise ValueError(f"--devices {count}: only {torch.cuda.device_count()} GPU(s) are visible")
    return count


def default_precision() -> str:
    """bf16 mixed precision on GPUs that have bf16, fp16 mixed on older GPUs, fp32 on CPUs."""
    import torch

    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


FP8_RECIPES = ("rowwise", "tensorwise")


def check_fp8(fp8: str, precision: Optional[str]) -> None:
    """Refuse `--fp8` where it cannot run (checked before any work): a precision other than bf16 (`precision` as the
    user gave it; None is the GPU's default, bf16-mixed on every GPU that has fp8), no such GPU, no torchao."""
    if fp8 == "none":
        return
    if fp8 not in FP8_RECIPES:
        raise ValueError(f"--fp8 must be none, {' or '.join(FP8_RECIPES)}, got {fp8!r}")
    if precision is not None and precision not in ("bf16-mixed", "bf16-true", "bf16"):  # Lightning reads bf16 as bf16-mixed
        raise ValueError(f"--fp8 {fp8} needs --precision bf16-mixed or bf16-true, got --precision {precision}")
    problem = fp8_gpu_problem()
    if problem:
        raise ValueError(f"--fp8 {fp8} needs a CUDA GPU of compute capability 8.9 or newer (H100, H200, L40, RTX 4090); {problem}")
    try:
        import torchao.float8  # noqa: F401
    except ImportError as e:
        raise ValueError(f"--fp8 {fp8} needs torchao's float8 training: pip install torchao ({e})") from None


def fp8_gpu_problem() -> Optional[str]:
    """Why this machine has no float8 matmuls (no CUDA GPU, or one older than compute capability 8.9), or None."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is available here (leave out --fp8 to train without it)"
    capability = torch.cuda.get_device_capability()
    if capability < (8, 9):
        return f"{torch.cuda.get_device_name()} has compute capability {capability[0]}.{capability[1]}"
    return None


def to_float8(model: Any, recipe: str) -> int:
    """Swap the plain linear layers of the transformer blocks whose sizes are multiples of 16 (float8 matmuls need
    them) for torchao's Float8Linear with `recipe`'s scaling, in place; returns how many. The head, the embedding
    and layers that wrap a linear layer (LoRA, adapters) stay as they are. A Float8Linear keeps the Parameter
    objects `weight` and `bias` in their precision and casts to float8 inside each matmul, so state-dict keys and
    checkpoints are those of a run without fp8. The inner dimension of each float8 matmul is padded with zeros to a
    multiple of 16 (torch._scaled_mm refuses others): the weight-gradient matmul's is the micro-batch's token count,
    which instruction rows of any length make arbitrary."""
    import dataclasses

    import torch.nn as nn
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    from litgpt.lora import WrappedLinear

    modules = dict(model.named_modules())
    chosen = {
        name for name, module in modules.items()
        if name.startswith("transformer.h.") and type(module) is nn.Linear
        and module.in_features % 16 == 0 and module.out_features % 16 == 0
        and not isinstance(modules[name.rsplit(".", 1)[0]], WrappedLinear)
    }
    config = dataclasses.replace(Float8LinearConfig.from_recipe_name(recipe), pad_inner_dim=True)
    convert_to_float8_training(model, module_filter_fn=lambda module, name: name in chosen, config=config)
    return len(chosen)


def resolve_resume(resume: ResumeArg, out_dir: Path, state_file: str = "lit_model.pth") -> Optional[Path]:
    """The checkpoint file to resume from: False → none, True → the latest complete one in out_dir (which must
    exist), 'auto' → the latest complete one if any, a path → that checkpoint folder or file (which must be
    complete). A damaged step folder is passed over, with one line saying so. `state_file`: the file of a step
    folder that holds the training state (`Method.state_file`); a folder's other weights file means it too."""
    if resume is False or resume is None:
        return None
    if resume is True or resume == "auto":
        latest = latest_checkpoint(out_dir, state_file)
        if latest is None and resume is True:
            raise FileNotFoundError(f"--resume true: no complete step-* checkpoint in {str(out_dir)!r} (--resume auto starts afresh instead)")
        return latest
    path = Path(resume)
    if path.is_file() and path.name != state_file and (path.parent / state_file).exists():  # e.g. step-*/lit_model.pth.lora
        path = path.parent
    path = path / state_file if path.is_dir() and not (path / ".metadata").is_file() else path
    if not path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {str(path)!r}")
    problem = checkpoint_problem(path)
    if problem:
        from litgpt.checkpoint import CheckpointError

        raise CheckpointError(f"--resume: {path} {problem}; resume from an earlier step-* folder")
    return path


def latest_checkpoint(out_dir: Path, state_file: str = "lit_model.pth") -> Optional[Path]:
    """The newest step-*/`state_file` of out_dir (step-XXXXXX or step-XXXXXXXX) that is complete; damaged newer ones
    are reported and skipped."""
    candidates = [p for p in Path(out_dir).glob(f"step-*/{state_file}") if p.parent.name[5:].isdigit()]
    for path in sorted(candidates, key=lambda p: int(p.parent.name[5:]), reverse=True):
        problem = checkpoint_problem(path)
        if not problem:
            return path
        print(f"Skipping {path.parent}: its {state_file} {problem}")
    return None


def checkpoint_problem(path: Path) -> Optional[str]:
    """Why a training checkpoint (a torch file, or a distributed checkpoint folder) cannot be resumed, or None.

    Cheap: a torch file is a zip archive whose directory sits at its end, so a truncated file fails to open."""
    import zipfile

    path = Path(path)
    if path.is_dir():  # FSDP's sharded checkpoint
        return None if (path / ".metadata").is_file() else "is a folder without .metadata (an unfinished sharded save)"
    try:
        if path.stat().st_size == 0:
            return "is empty (0 bytes)"
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                return "is not a torch checkpoint archive"
    except (OSError, zipfile.BadZipFile) as e:
        return f"is truncated or corrupt ({e})"
    return None


def resume_hint(out_dir: Path, state_file: str = "lit_model.pth") -> str:
    """Where the last checkpoint of out_dir is and the command that continues from it (for an interrupted run)."""
    import shlex
    import sys

    latest = latest_checkpoint(out_dir, state_file)
    if latest is None:
        return f"No checkpoint was saved in {out_dir} yet (--train.save_interval sets how often); nothing to resume"
    argv = sys.argv[1:]
    if Path(sys.argv[0]).name in ("litgpt", "__main__.py") and argv:
        kept, skip = [], False
        for arg in argv:
            if skip or arg.startswith("--resume="):
                skip = False
                continue
            if arg == "--resume":
                skip = True
                continue
            kept.append(arg)
        command = "litgpt " + shlex.join(kept + ["--resume", "auto"])
    else:
        command = "the same call with resume='auto'"
    return f"The last checkpoint is {latest.parent}; continue with: {command}"


def remove_stale(out_dir: Path) -> None:
    """Delete hidden temporary checkpoint folders that a killed or failed run left in out_dir."""
    for stale in sorted(Path(out_dir).glob(".*.tmp")) + sorted(Path(out_dir).glob(".*.old")):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
            print(f"Removed {stale}, a partial checkpoint an earlier run left behind")


def load_training_state(fabric: "Fabric", resume: Path, state: Dict[str, Any], strict: bool) -> None:
    """fabric.load with `weights_only=True`; a refused pickle or weights of another model are one line."""
    try:
        fabric.load(resume, state, strict=strict, weights_only=True)
    except pickle.UnpicklingError as e:  # refused, not run: a checkpoint from anyone must not execute code
        from litgpt.checkpoint import unpickling_refused

        raise unpickling_refused(resume, e) from None
    except RuntimeError as e:
        if "Error(s) in loading state_dict" not in str(e):
            raise
        raise does_not_fit(resume, e) from None


def does_not_fit(resume: Path, error: Exception) -> Exception:
    """One line for a training checkpoint whose weights are not this run's model: the first tensor that differs."""
    import re

    from litgpt.checkpoint import CheckpointError

    message = str(error)
    sizes = re.findall(r"size mismatch for ([\w.]+): copying a param with shape torch.Size\((\[[\d, ]*\])\) from "
                       r"checkpoint, the shape in current model is torch.Size\((\[[\d, ]*\])\)", message)
    if sizes:
        name, theirs, ours = sizes[0]
        more = f" (and {len(sizes) - 1} more)" if len(sizes) > 1 else ""
        what = f"{name} is {theirs} there but {ours} in this run's model{more}"
    else:
        what = next((line.strip() for line in message.splitlines()[1:] if line.strip()), message.splitlines()[0])
    return CheckpointError(f"--resume: {resume} does not fit this run's model ({what}); resume with the model config it was trained with")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the last checkpoint is and how to resume."""


def fsdp_strategy(block_class: type, num_nodes: int) -> Any:
    """The strategy of a run on several GPUs: FSDP with each `block_class` its own unit, sharded over the GPUs of a
    node and replicated across nodes; checkpoints hold whole tensors (`state_dict_type="full"`), so they load on any
    number of devices and in LitGPT."""
    from lightning.fabric.strategies import FSDPStrategy

    return FSDPStrategy(
        auto_wrap_policy={block_class},
        state_dict_type="full",
        sharding_strategy="HYBRID_SHARD" if num_nodes > 1 else "FULL_SHARD",
    )


def make_fabric(devices: int, num_nodes: int, precision: str, loggers: List[Any], block_class: type) -> "Fabric":
    """Fabric for the run: one process per device; FSDP (`fsdp_strategy`) on several GPUs, DDP over gloo on
    several CPU processes (started by spawning, which works from scripts, `python -c` and notebooks)."""
    import lightning as L
    import torch
    from lightning.fabric.strategies import DDPStrategy

    torch.set_float32_matmul_precision("high")  # fp32 products on TF32 tensor cores where a GPU has them, as LitGPT
    strategy: Any = "auto"
    if devices * num_nodes > 1:
        if torch.cuda.is_available():
            strategy = fsdp_strategy(block_class, num_nodes)
        else:
            strategy = DDPStrategy(process_group_backend="gloo", start_method="spawn")
    return L.Fabric(devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision, loggers=loggers)


# ---------------------------------------------------------------------------------------------------------
# the loop


@dataclass
class RunSpec:
    """One training run as the command decided it, checks done: what `fit` trains, how, and where it writes."""

    method: Method
    data: "DataModule"
    """Connected (`data.connect`) and prepared (`prepare_data`) already"""
    train: TrainArgs
    eval: EvalArgs
    optimizer: Union[str, Dict]
    out_dir: Path
    resume: Optional[Path]
    """The checkpoint file to continue from (`resolve_resume`), or None"""
    files: FolderFiles
    compile: Optional[bool] = False
    """Compile the model with torch.compile; None: on CUDA devices"""
    fp8: str = "none"
    """Float8 training of the blocks' linear layers with torchao: "none", "rowwise" or "tensorwise" (`check_fp8` first)"""
    sample: Optional[Callable[["Fabric", Any, int], None]] = None
    """Runs after every validation on every process, as sample(fabric, model, step) (finetuning shows a generated
    reply with it, see `generate_sample`)"""


def prepare_data(fabric: "Fabric", data: "DataModule") -> None:
    """Download, tokenize and cache the data on the first process, then load it on every process: once a run."""
    with fabric.rank_zero_first():
        data.prepare_data()
    data.setup()


def fit(fabric: "Fabric", model: Any, run: RunSpec) -> Dict[str, Any]:
    """Train `model` (built and initialised, not yet set up by Fabric) as `run` says; write checkpoints and final/.

    The command has run `check_train` and connected and prepared `run.data` (`prepare_data`) already. The stages:
    `_start` (model, optimizer, loaders, plan), `_resume`, then per optimizer step `_optimizer_step`, `_log_step`
    and `_after_step` (validation, checkpoint), and `_finish` (final validation, final/). Returns the final
    training state (counters, history).
    """
    t = _start(fabric, model, run)
    _resume(t)
    _start_monitors(t)
    if run.eval.initial_validation and t.val_loader is not None and t.state["step_count"] == 0:
        t.val_loss = _validation(t)
    try:
        t.clock.start()
        while t.state["step_count"] < t.max_steps:
            if run.train.max_time is not None and stop_for_time(fabric, t.clock.now(), run.train.max_time):
                t.progress.print(f"Stopping: --train.max_time of {run.train.max_time}s reached")
                break
            step_start = t.clock.now()
            _optimizer_step(t)
            _log_step(t, step_start)
            _after_step(t)
    except KeyboardInterrupt:
        t.progress.close()
        raise Interrupted(f"Interrupted at step {t.state['step_count']}. {resume_hint(run.out_dir, run.method.state_file)}") from None
    return _finish(t)


@dataclass
class _Training:
    """A run of `fit` in progress: what its stages share."""

    fabric: "Fabric"
    run: RunSpec
    model: Any
    """Set up by Fabric (and compiled, if asked)"""
    optimizer: Any
    base_lrs: List[float]
    batches: "Batches"
    val_loader: Any
    seq_len: int
    accum: int
    ignore_index: int
    max_steps: int
    lr_at: Callable[[int, float], float]
    """The learning rate of optimizer step `step` (from 0) for a base lr (`lr_schedule`)"""
    flops: Optional[int]
    strict: bool
    """Whether a checkpoint holds the whole model (else only what the method saves)"""
    state: Dict[str, Any]
    """What a checkpoint saves: model, optimizer, data position, counters, history, the loss since the last log"""
    progress: Any = None
    throughput: Any = None
    clock: Any = None
    val_loss: Optional[float] = None
    session: Dict[str, int] = field(default_factory=lambda: dict(steps=0, iters=0, tokens=0, samples=0))
    """This process's counts since it started (not restored on resume), for the throughput"""


def _start(fabric: "Fabric", model: Any, run: RunSpec) -> _Training:
    """Set up the model, the optimizer and the loaders; plan the steps; the initial training state."""
    import torch

    train = run.train
    accum = train.gradient_accumulation_iters(fabric.world_size)
    model, seq_len, strict, flops = _setup_model(fabric, model, run)
    opt, base_lrs = _setup_optimizer(fabric, model, run)
    train_loader = fabric.setup_dataloaders(run.data.train_dataloader())
    val_loader = run.data.val_dataloader()
    val_loader = None if val_loader is None else fabric.setup_dataloaders(val_loader)
    batches = Batches(train_loader, fabric.world_size)

    iters_per_epoch = len(train_loader) if hasattr(train_loader, "__len__") else None
    max_steps = plan_steps(train, accum, fabric.world_size, seq_len, iters_per_epoch)
    state: Dict[str, Any] = {
        "model": model,
        "optimizer": opt,
        "train_dataloader": batches,
        "iter_num": 0,
        "step_count": 0,
        "tokens": 0,
        "history": [],
        # the loss of micro-batches since the last log line, so a resumed run logs what an uninterrupted one would
        "loss_sum": torch.zeros((), device=fabric.device),
        "loss_count": 0,
    }
    return _Training(
        fabric=fabric, run=run, model=model, optimizer=opt, base_lrs=base_lrs, batches=batches, val_loader=val_loader,
        seq_len=seq_len, accum=accum, ignore_index=getattr(run.data, "ignore_index", -100),  # token blocks have no ignored labels
        max_steps=max_steps, lr_at=lr_schedule(run, accum, fabric.world_size, seq_len, iters_per_epoch, max_steps),
        flops=flops, strict=strict, state=state,
    )


def _setup_model(fabric: "Fabric", model: Any, run: RunSpec) -> Tuple[Any, int, bool, Optional[int]]:
    """The method's model with what trains marked, compiled if asked and set up by Fabric; its sequence length;
    whether checkpoints hold all of it; its FLOPs per micro-batch."""
    import torch

    from litgpt.train import fused, monitor

    method = run.method
    model = method.transform(model)
    for name, param in model.named_parameters():
        param.requires_grad = method.is_trainable(name)
    seq_len = model.max_seq_length
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    fabric.print(f"Parameters: {n_total:,} ({n_trainable:,} trainable)")
    flops = monitor.measure_flops(lambda: method.transform(type(model)(model.config)), run.train.micro_batch_size, seq_len)

    # names from the plain module: FSDP's state_dict() before the first forward initialises its inner units as roots
    strict = all(method.is_saved(name) for name in model.state_dict())
    if run.fp8 != "none":
        converted = to_float8(model, run.fp8)
        fabric.print(f"fp8: {converted} linear layers train in float8 ({run.fp8})")
    compiling = bool(run.compile or (run.compile is None and fabric.device.type == "cuda"))
    if fabric.device.type == "cuda":  # liger-kernel's RMSNorm, SwiGLU, RoPE where they fit (LITGPT_FUSED_KERNELS: train/fused.py)
        fabric.print(fused.describe(fused.use_fused_kernels(model, fabric.device, compiling), compiling))
    if compiling:
        model = torch.compile(model)
    return fabric.setup(model), seq_len, strict, flops


def _setup_optimizer(fabric: "Fabric", model: Any, run: RunSpec) -> Tuple[Any, List[float]]:
    """The optimizer over the trainable parameters (fused on CUDA where it can be), and its base learning rates."""
    cls, init_args = resolve_optimizer(run.optimizer)
    if fabric.device.type == "cuda" and "fused" in signature(cls).parameters:
        init_args.setdefault("fused", True)
    opt = cls([p for p in model.parameters() if p.requires_grad], **init_args)
    base_lrs = [group["lr"] for group in opt.param_groups]
    floor = f"min_lr {run.train.min_lr:g}" if run.method.pretraining else "0"
    fabric.print(f"Optimizer: {cls.__name__}, lr {base_lrs[0]:g} (warmup, then cosine decay to {floor})")
    return fabric.setup_optimizers(opt), base_lrs


def _resume(t: _Training) -> None:
    """Remove what a killed run left half-written; continue from the run's checkpoint, if any."""
    fabric, state, resume = t.fabric, t.state, t.run.resume
    if fabric.is_global_zero:
        remove_stale(t.run.out_dir)
    if resume is not None:
        fabric.print(f"Resuming from {resume}")
        load_training_state(fabric, resume, state, t.strict)
        load_rng_state(resume.parent, fabric.global_rank)
        state["loss_sum"] = state["loss_sum"].to(fabric.device)
        saved_world_size = t.batches.saved_world_size
        if saved_world_size != fabric.world_size:
            # iter_num and tokens count one process's micro-batches and tokens: restate them for this many processes
            fabric.print(f"The checkpoint was written by {saved_world_size} process(es), this run has {fabric.world_size}")
            state["iter_num"] = state["step_count"] * t.accum
            state["tokens"] = state["tokens"] * saved_world_size // fabric.world_size
    if state["step_count"] >= t.max_steps:
        fabric.print(f"The checkpoint is at step {state['step_count']}, the run's last step is {t.max_steps}: nothing to train")


def _start_monitors(t: _Training) -> None:
    """The progress bar, the throughput meter and the training clock."""
    from litgpt.train import monitor

    fabric = t.fabric
    t.progress = monitor.Progress(fabric, t.max_steps, t.state["step_count"])
    precision = getattr(fabric.strategy.precision, "precision", "32-true")
    t.throughput = monitor.Throughput(fabric.world_size, t.flops, monitor.peak_flops(fabric.device, precision))
    t.clock = monitor.Clock()


def _validation(t: _Training) -> float:
    """Validate, log and print the loss, and show the sample (if any)."""
    fabric, state, sample = t.fabric, t.state, t.run.sample
    loss = _eager_if_compiling_fails(
        t, lambda: validate(fabric, t.model, t.val_loader, t.run.eval.max_iters, t.seq_len, t.ignore_index, t.run.method.loss))
    state["history"].append({"step": state["step_count"], "val_loss": loss})
    fabric.log_dict({"val_loss": loss, "val_ppl": math.exp(min(loss, 50))}, step=state["step_count"])
    t.progress.print(f"step {state['step_count']}: val loss {loss:.4f}, val ppl {math.exp(min(loss, 50)):.2f}")
    if sample is not None:
        sample(fabric, t.model, state["step_count"])
    return loss


def _optimizer_step(t: _Training) -> None:
    """One optimizer step: `accum` micro-batches of forward and backward, clipping, the scheduled lr, the step.
    Should compiling fail (`torch.compile` compiles at the first call, and again for a new shape), the step starts
    over eagerly on the same micro-batches (`_eager_if_compiling_fails`)."""
    fabric, model, opt, state, session = t.fabric, t.model, t.optimizer, t.state, t.session
    train = t.run.train
    batches: List[Any] = []  # this step's micro-batches so far, to start over with

    def forward_backward() -> List[Any]:
        losses = []
        for micro in range(t.accum):
            if micro == len(batches):
                batches.append(next(t.batches))
            with fabric.no_backward_sync(model, enabled=micro < t.accum - 1):
                # the model computes the loss from its hidden states, never holding the full logits (litgpt/loss.py)
                loss = t.run.method.loss(model, batches[micro], t.seq_len, t.ignore_index)
                fabric.backward(loss / t.accum)
            losses.append(loss.detach())
        return losses

    losses = _eager_if_compiling_fails(t, forward_backward, undo=lambda: opt.zero_grad(set_to_none=True))
    for loss, batch in zip(losses, batches):
        input_ids, _ = split_batch(batch, t.seq_len)
        state["loss_sum"] += loss
        state["loss_count"] += 1
        state["iter_num"] += 1
        state["tokens"] += input_ids.numel()
        session["tokens"] += input_ids.numel()
        session["samples"] += input_ids.size(0)
    session["iters"] += t.accum
    if train.max_norm is not None:
        fabric.clip_gradients(model, opt, max_norm=train.max_norm)
    for group, base in zip(opt.param_groups, t.base_lrs):
        group["lr"] = t.lr_at(state["step_count"], base)
    opt.step()
    opt.zero_grad(set_to_none=True)
    state["step_count"] += 1
    session["steps"] += 1


def _compiled(model: Any) -> Optional[Any]:
    """The torch.compile'd module inside Fabric's wrapper `model`, if the model runs compiled."""
    inner = getattr(model, "_forward_module", None)
    return inner if hasattr(inner, "_orig_mod") else None


def _eager_if_compiling_fails(t: _Training, run: Callable[[], Any], undo: Optional[Callable[[], None]] = None) -> Any:
    """`run()`; should torch.compile fail to compile the model in it (a missing C compiler for Triton, a GPU that
    Triton does not support, an inductor bug), the model runs eagerly from then on, with a one-line warning, and
    `run()` again: from the random state it began with (a failed compilation moves it; dropout reads it), after
    `undo()` (e.g. clearing the gradients a failed step accumulated). torch.compile compiles before any kernel of
    the call runs, so nothing else changed."""
    import torch

    from litgpt.checkpoint import first_line

    compiled = _compiled(t.model)
    if compiled is None:
        return run()
    rng = torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        return run()
    except Exception as error:
        from_compiler = isinstance(error, torch._dynamo.exc.TorchDynamoException) or type(error).__module__.startswith(
            ("torch._inductor", "torch._dynamo", "triton"))
        if not from_compiler:
            raise
        cause: BaseException = error  # dynamo wraps the compiler's own error ("backend='inductor' raised:")
        while (getattr(cause, "inner_exception", None) or cause.__cause__) is not None:
            cause = getattr(cause, "inner_exception", None) or cause.__cause__
        t.fabric.print(f"Warning: compiling the model failed ({type(cause).__name__}: {first_line(cause)}); training "
                       "without torch.compile (--compile false skips it)")
    t.model._forward_module = compiled._orig_mod
    torch.set_rng_state(rng[0])
    if rng[1] is not None:
        torch.cuda.set_rng_state_all(rng[1])
    if undo is not None:
        undo()
    return run()


def _log_step(t: _Training, step_start: float) -> None:
    """Every --train.log_interval steps (and the last): the mean loss since the last log line and the metrics,
    to the loggers and the console; else the progress bar moves."""
    from litgpt.train import monitor

    fabric, state, session = t.fabric, t.state, t.session
    step, max_steps = state["step_count"], t.max_steps
    if not (step % t.run.train.log_interval == 0 or step == max_steps):
        t.progress.update(step)
        return
    mean_loss = fabric.all_reduce(state["loss_sum"] / state["loss_count"], reduce_op="mean").item()
    state["loss_sum"].zero_()
    state["loss_count"] = 0
    now = t.clock.now()
    t.throughput.update(now, session["iters"], session["samples"], session["tokens"])
    left = t.throughput.seconds_left((max_steps - step) * t.accum)
    metrics = {
        "loss": mean_loss,
        "iter": state["iter_num"],
        "step": step,
        "epoch": t.batches.epoch,
        "iter_time": (now - step_start) / t.accum,
        "remaining_time": now / session["steps"] * (max_steps - step) if left is None else left,
        "tokens": state["tokens"],
        "total_tokens": state["tokens"] * fabric.world_size,
        "learning_rate": t.optimizer.param_groups[0]["lr"],
        **t.throughput.compute(),
        **t.run.method.metrics(fabric),
    }
    fabric.log_dict(metrics, step=step)
    state["history"].append({k: metrics[k] for k in ("step", "loss", "throughput/tokens_per_sec") if k in metrics})
    t.progress.update(step, metrics)
    t.progress.print(monitor.log_line(metrics, max_steps, t.val_loss))


def _after_step(t: _Training) -> None:
    """The hooks after a step: validation every --eval.interval steps, a checkpoint every --train.save_interval
    (the training clock stopped meanwhile)."""
    step, run = t.state["step_count"], t.run
    if t.val_loader is not None and step % run.eval.interval == 0 and step < t.max_steps:
        t.clock.stop()
        t.val_loss = _validation(t)
        t.clock.start()
    if run.train.save_interval is not None and step % run.train.save_interval == 0:
        t.clock.stop()
        folder = run.out_dir / run.method.step_folder(step)
        save_checkpoint(t.fabric, t.state, folder, run.files, run.method)
        t.progress.print(f"Saved checkpoint {folder}")
        t.clock.start()


def _finish(t: _Training) -> Dict[str, Any]:
    """The final validation and final/; returns the training state without the objects."""
    import torch

    fabric, run, state = t.fabric, t.run, t.state
    t.clock.stop()
    t.progress.close()
    if run.eval.final_validation and t.val_loader is not None:
        t.val_loss = _validation(t)
    final = run.out_dir / "final"
    save_final(fabric, t.model, run.method, final, run.files, state["history"])
    fabric.print(f"Saved the trained model to {final} ({t.clock.elapsed:.1f}s of training)")
    if fabric.device.type == "cuda":
        fabric.print(f"Peak memory: {torch.cuda.max_memory_allocated() / 1e9:.02f} GB")
    return {k: v for k, v in state.items() if k not in ("model", "optimizer", "train_dataloader", "loss_sum")}


class Batches:
    """Endless batches from a loader, epoch after epoch, with a position that checkpoints save and restore.

    A loader with its own `state_dict` (litdata's StreamingDataLoader) restores itself; any other is
    fast-forwarded to the saved batch of the saved epoch (its sampler reshuffles by epoch number), counted for
    this run's number of processes (`world_size`) if the checkpoint was written by another number.
    """

    def __init__(self, loader: Any, world_size: int = 1) -> None:
        self.loader = loader
        self.world_size = self.saved_world_size = world_size
        self.inner = getattr(loader, "_dataloader", loader)  # under Fabric's wrapper
        self.stateful = hasattr(self.inner, "state_dict") and hasattr(self.inner, "load_state_dict")
        # a plain shuffled DataLoader draws each epoch's order from its generator's running state, which a resumed
        # run does not have: reseed it per epoch, so the order depends on the seed and the epoch alone
        self.generator = getattr(self.inner, "generator", None)
        self.seed = None if self.generator is None else self.generator.initial_seed()
        self.epoch = 0
        self.index = 0
        self._skip = 0
        self._iterator: Optional[Iterator] = None

    def __next__(self) -> Any:
        while True:
            if self._iterator is None:
                if hasattr(self.loader, "_num_iter_calls"):
                    self.loader._num_iter_calls = self.epoch  # Fabric sets the sampler's epoch from this count
                if self.generator is not None:
                    self.generator.manual_seed(self.seed + self.epoch)
                self._iterator = iter(self.loader)
                for _ in range(self._skip):
                    next(self._iterator)
                self._skip = 0
            try:
                batch = next(self._iterator)
            except StopIteration:
                self._iterator = None
                self.epoch += 1
                self.index = 0
                continue
            self.index += 1
            return batch

    def state_dict(self) -> Dict[str, Any]:
        state = {"epoch": self.epoch, "index": self.index, "world_size": self.world_size}
        if self.stateful:
            state["loader"] = self.inner.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.epoch, self.index = state["epoch"], state["index"]
        self.saved_world_size = state.get("world_size", self.world_size)
        if self.stateful and "loader" in state:
            self.inner.load_state_dict(state["loader"])
        else:
            # a distributed sampler deals each of the processes every world_size-th sample of one epoch order, so
            # `index` batches on each of N processes is the point `index * N / M` batches on each of M processes
            self.index, rest = divmod(self.index * self.saved_world_size, self.world_size)
            if rest:
                warnings.warn(f"The data position of {self.saved_world_size} process(es) falls inside a batch of "
                              f"{self.world_size}: each process sees part of one batch again")
            if hasattr(self.loader, "__len__"):
                self.index = min(self.index, len(self.loader))
            self._skip = self.index
        self._iterator = None


def split_batch(batch: Any, seq_len: int) -> Tuple["torch.Tensor", "torch.Tensor"]:
    """Inputs and next-token targets: from a (B, T+1) token block, or from {"input_ids", "labels"} (finetuning)."""
    if isinstance(batch, dict):
        input_ids, labels = batch["input_ids"], batch["labels"]
        return input_ids[:, :-1][:, :seq_len].long(), labels[:, 1:][:, :seq_len].long()
    return batch[:, :seq_len].long(), batch[:, 1 : seq_len + 1].long()


def next_token_loss(model: Any, batch: Any, seq_len: int, ignore_index: int) -> "torch.Tensor":
    """Mean cross-entropy of a batch's next tokens; packed rows (with "document_ids") attend within each sample."""
    input_ids, targets = split_batch(batch, seq_len)
    if isinstance(batch, dict) and "document_ids" in batch:
        document_ids = batch["document_ids"][:, :-1][:, :seq_len]
        return model(input_ids, targets=targets, ignore_index=ignore_index, document_ids=document_ids)
    return model(input_ids, targets=targets, ignore_index=ignore_index)


def plan_steps(train: TrainArgs, accum: int, world_size: int, seq_len: int, iters_per_epoch: Optional[int]) -> int:
    """The run's optimizer steps: the tightest of --train.max_steps, max_tokens and epochs."""
    limits = []
    if train.max_steps:
        limits.append(train.max_steps * accum)
    if train.max_tokens:
        limits.append(train.max_tokens // (world_size * train.micro_batch_size * seq_len))
    if train.epochs:
        if iters_per_epoch is None:
            raise ValueError("--train.epochs needs a training set of known length")
        limits.append(train.epochs * iters_per_epoch)
    max_steps = min(limits) // accum
    if max_steps < 1:
        raise ValueError(f"--train.max_steps/max_tokens/epochs allow no full optimizer step of {accum} micro-batch(es)")
    return max_steps


def lr_schedule(run: RunSpec, accum: int, world_size: int, seq_len: int, iters_per_epoch: Optional[int],
                max_steps: int) -> Callable[[int, float], float]:
    """The learning rate of each optimizer step (from 0) for a base lr, as LitGPT schedules it.

    Pretraining (its pretrain.py) sets the lr before each micro-batch from the micro-batches done (`learning_rate`),
    so a step takes its last micro-batch's, over a horizon of the micro-batches of --train.max_tokens (LitGPT has no
    other limit there; else the planned steps'). The lr of a step thus depends on the micro-batches per step: a run
    resumed on another number of processes follows the schedule of the new number, as LitGPT's would.
    Finetuning (its finetune/*.py: LambdaLR, then CosineAnnealingLR, in a SequentialLR stepped after each optimizer
    step) warms up over --train.lr_warmup_steps optimizer steps and decays to 0 over the rest of min(max_steps,
    epochs x whole steps per epoch) (`finetune_learning_rate`); --train.min_lr plays no part."""
    train = run.train
    if run.method.pretraining:
        horizon = train.max_tokens // (world_size * train.micro_batch_size * seq_len) if train.max_tokens else max_steps * accum
        warmup_iters = train.warmup_iters(world_size, horizon, iters_per_epoch)
        return lambda step, base: learning_rate((step + 1) * accum - 1, base, train.min_lr, warmup_iters, horizon)
    steps = max_steps
    if train.epochs and iters_per_epoch is not None:
        steps = min(steps, train.epochs * (iters_per_epoch // accum))
    warmup = train.lr_warmup_steps or 0
    if train.lr_warmup_fraction:  # ours: LitGPT's finetuning takes warmup steps only
        warmup = math.ceil(train.warmup_iters(world_size, max_steps * accum, iters_per_epoch) / accum)
    return lambda step, base: finetune_learning_rate(step, base, warmup, steps)


def learning_rate(it: int, base: float, min_lr: float, warmup: int, max_iters: int) -> float:
    """Pretraining's learning rate after `it` micro-batches: linear warmup from 0 to `base` over `warmup`, then
    cosine decay to `min_lr` at `max_iters`, and `min_lr` after."""
    if it < warmup:
        return base * it / warmup
    progress = min(1.0, (it - warmup) / max(1, max_iters - warmup))
    return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def finetune_learning_rate(step: int, base: float, warmup: int, steps: int) -> float:
    """Finetuning's learning rate at optimizer step `step` (from 0): `base * step / warmup` during the warmup, then
    a cosine from `base` with half-period `steps - warmup` (down to 0 there, and up again past it, as torch's
    CosineAnnealingLR goes on)."""
    if step < warmup:
        return base * step / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def stop_for_time(fabric: "Fabric", elapsed: float, max_time: float) -> bool:
    """Whether every process stops now (rank 0 decides, so all stop at the same step)."""
    return bool(fabric.broadcast(elapsed >= max_time, src=0))


def validate(
    fabric: "Fabric", model: Any, loader: Any, max_iters: int, seq_len: int, ignore_index: int = -100,
    loss: Optional[Callable] = None,
) -> float:
    """Mean loss over the first `max_iters` validation batches, averaged over processes."""
    import torch

    model.eval()
    total = torch.zeros((), device=fabric.device)
    count = 0
    with torch.no_grad():
        for k, batch in enumerate(loader):
            if k >= max_iters:
                break
            total += (loss or next_token_loss)(model, batch, seq_len, ignore_index)
            count += 1
    model.train()
    return fabric.all_reduce(total / max(count, 1), reduce_op="mean").item()


def generate_sample(fabric: "Fabric", model: Any, prompt: "torch.Tensor", max_new_tokens: int, stop_tokens: Sequence = ()) -> List[int]:
    """Greedy new token ids after the 1-D `prompt`, at most `max_new_tokens` and as many as the model's
    max_seq_length leaves room for. Runs on every process (FSDP gathers weights in each forward); the KV
    cache it needs is cleared afterwards and the model is back in train mode."""
    from litgpt.engine.core import ensure_kv_cache
    from litgpt.engine.batcher import generate_tokens

    inner = getattr(model, "_original_module", model)  # under Fabric's wrapper
    inner = getattr(inner, "_orig_mod", inner)  # under torch.compile
    max_new_tokens = min(max_new_tokens, inner.max_seq_length - prompt.numel() + 1)
    if max_new_tokens < 1:
        return []
    model.eval()
    # forwards go through Fabric's wrapper, so precision and sharding apply as in training, but not through
    # torch.compile: token-by-token decoding with a KV cache would compile graphs of its own, at every new length
    compiled = _compiled(model)
    if compiled is not None:
        model._forward_module = compiled._orig_mod
    try:
        ensure_kv_cache(inner, 1, prompt.numel() + max_new_tokens - 1)
        with plain_linear_layers(inner):
            return list(generate_tokens(model, prompt.to(fabric.device), max_new_tokens, temperature=0.0, stop_tokens=stop_tokens))
    finally:
        if compiled is not None:
            model._forward_module = compiled
        inner.clear_kv_cache()
        model.train()


@contextmanager
def plain_linear_layers(model: Any) -> Iterator[None]:
    """Within: each Float8Linear layer of `model` (`to_float8`) computes the plain matmul over its weight and bias;
    put back after. The generation engine runs under torch.inference_mode, where torchao's row-wise Float8Linear
    fails ("aten.reshape.default with axiswise scaling is not supported yet", torchao 0.13-0.18); a sample needs
    no float8 matmuls."""
    import sys

    from litgpt.lora import PlainLinear

    float8 = sys.modules.get("torchao.float8.float8_linear")  # loaded only if `to_float8` converted layers
    found = [] if float8 is None else [
        (parent, name, child) for parent in model.modules() for name, child in parent.named_children()
        if isinstance(child, float8.Float8Linear)
    ]
    for parent, name, child in found:
        setattr(parent, name, PlainLinear(child))
    try:
        yield
    finally:
        for parent, name, child in found:
            setattr(parent, name, child)


# ---------------------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(fabric: "Fabric", state: Dict[str, Any], folder: Path, files: FolderFiles, method: Method) -> None:
    """Write a resumable checkpoint folder atomically (temporary folder, then rename)."""
    import torch

    for logger in fabric.loggers:  # the logs up to here must survive a kill, as the checkpoint does
        logger.save()
    saved = {"model": lambda name, _: method.is_saved(name)}
    tmp = _begin_folder(fabric, folder)
    with _writing(tmp, folder, method.state_file):
        fabric.save(tmp / method.state_file, state, filter=saved)
        if method.weights_file != method.state_file:  # LitGPT's file of the method's weights, for merge_lora and generate
            fabric.save(tmp / method.weights_file, {"model": state["model"]}, filter=saved)
        torch.save(rng_state(), tmp / f"rng-{fabric.global_rank}.pt")
        if fabric.is_global_zero:
            files.write(tmp)
    _commit_folder(fabric, tmp, folder)


def save_final(fabric: "Fabric", model: Any, method: Method, folder: Path, files: FolderFiles, history: List[Dict]) -> None:
    """Write final/: the method's weights, the folder files and training.png, atomically."""
    from litgpt.train.monitor import plot_training

    for logger in fabric.loggers:
        logger.save()
    tmp = _begin_folder(fabric, folder)
    with _writing(tmp, folder, method.state_file):
        fabric.save(tmp / method.weights_file, {"model": model}, filter={"model": lambda name, _: method.is_saved(name)})
        method.finish(fabric, model, tmp)
        if fabric.is_global_zero:
            files.write(tmp)
            if history:
                plot_training(history, tmp / "training.png")
    _commit_folder(fabric, tmp, folder)


@contextmanager
def _writing(tmp: Path, folder: Path, state_file: str = "lit_model.pth") -> Iterator[None]:
    """A write that fails (disk full, quota) removes its temporary folder and says so in one line."""
    try:
        yield
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        from litgpt.checkpoint import CheckpointError

        reason = e.strerror or str(e)
        hint = resume_hint(folder.parent, state_file)
        raise CheckpointError(f"Could not write the checkpoint {folder} ({reason}); free some space. {hint}") from None


def _begin_folder(fabric: "Fabric", folder: Path) -> Path:
    tmp = folder.with_name(f".{folder.name}.tmp")
    if fabric.is_global_zero:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    fabric.barrier()
    return tmp


def _commit_folder(fabric: "Fabric", tmp: Path, folder: Path) -> None:
    fabric.barrier()
    if fabric.is_global_zero:
        _fsync_tree(tmp)  # the files reach the disk before the rename makes the folder count as complete
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.replace(old)
            tmp.replace(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.replace(folder)
        _fsync_dir(folder.parent)
    fabric.barrier()


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for path in [*sorted(p for p in root.rglob("*") if p.is_dir()), root]:
        _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder
        pass
    finally:
        os.close(fd)


def rng_state() -> Dict[str, Any]:
    """Every random generator's state as tensors and plain numbers, so that it loads without unpickling code."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_rng_state(folder: Path, rank: int) -> None:
    """Restore this process's random generators from a checkpoint (skipped if it has none for this rank).

    The file is read with `weights_only=True`: tensors and plain values only (and, for folders written before
    the states were stored as tensors, NumPy arrays); anything else is refused, never unpickled."""
    import numpy as np
    import torch

    from litgpt.checkpoint import CheckpointError, read_plain

    path = folder / f"rng-{rank}.pt"
    if not path.is_file():
        return
    reconstruct = (getattr(np, "_core", None) or np.core).multiarray._reconstruct  # np.core only on NumPy 1 (deprecated on 2)
    state = read_plain(path, allowed=(np.ndarray, np.dtype, type(np.dtype(np.uint32)), reconstruct))
    try:
        version, internal, gauss = state["python"]
        kind, keys, pos, has_gauss, cached = state["numpy"]
        internal = internal.tolist() if isinstance(internal, torch.Tensor) else internal
        keys = keys.numpy() if isinstance(keys, torch.Tensor) else keys
        random.setstate((version, tuple(int(i) for i in internal), gauss))
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as e:
        raise CheckpointError(f"{path} does not hold random-generator states ({e}); delete it to resume without them") from None


def cpu_threads(fabric: "Fabric", devices: int) -> None:
    """Split the CPU cores between the `devices` processes of one machine, so they do not fight over them."""
    import torch

    if fabric.device.type == "cpu" and devices > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))
