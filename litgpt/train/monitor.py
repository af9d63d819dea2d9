"""What a training run reports: throughput and MFU, the experiment loggers, the progress bar with its log lines,
and the `training.png` plot of loss and throughput."""

import importlib.util
import re
import sys
import time
from collections import deque
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Tuple

if TYPE_CHECKING:
    import torch

    from litgpt.train.args import LogArgs

# Dense (no sparsity) peak TFLOP/s per device from the vendors' data sheets, most specific pattern first.
PEAK_TFLOPS: List[Tuple[str, Dict[str, float]]] = [
    (r"b200", {"bf16": 2250.0, "fp16": 2250.0, "tf32": 1100.0, "fp32": 80.0}),
    (r"h200", {"bf16": 989.5, "fp16": 989.5, "tf32": 494.7, "fp32": 66.9}),
    (r"h100.*nvl", {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    (r"h100.*pcie", {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.2}),
    (r"h100", {"bf16": 989.5, "fp16": 989.5, "tf32": 494.7, "fp32": 66.9}),
    (r"a100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    (r"l40s", {"bf16": 362.1, "fp16": 362.1, "tf32": 183.0, "fp32": 91.6}),
    (r"\bl4\b", {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    (r"rtx 4090", {"bf16": 165.2, "fp16": 165.2, "tf32": 82.6, "fp32": 82.6}),
    (r"rtx 3090", {"bf16": 71.0, "fp16": 71.0, "tf32": 35.6, "fp32": 35.6}),
    (r"v100", {"fp16": 125.0, "fp32": 15.7}),
    (r"\bt4\b", {"fp16": 65.0, "fp32": 8.1}),
]

LOGGERS = ("wandb", "tensorboard", "csv", "mlflow", "litlogger")
_LOGGER_PACKAGES = {"wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlflow", "litlogger": "litlogger"}


def peak_flops(device: "torch.device", precision: str) -> Optional[float]:
    """Peak FLOP/s of one device at the precision's matmul dtype; None where unknown (CPUs, unlisted GPUs)."""
    import torch

    if device.type != "cuda":
        return None
    chip = torch.cuda.get_device_name(device).lower()
    if precision.startswith("bf16"):
        dtype = "bf16"
    elif precision.startswith("16"):
        dtype = "fp16"
    else:
        dtype = "fp32" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    for pattern, table in PEAK_TFLOPS:
        if re.search(pattern, chip):
            return table[dtype] * 1e12 if dtype in table else None
    return None


def measure_flops(build_model: Callable[[], "torch.nn.Module"], batch_size: int, seq_len: int) -> int:
    """FLOPs of one training micro-batch (forward and backward), counted on a meta-device copy of the model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model()
        x = torch.randint(0, 1, (batch_size, seq_len))
    counter = FlopCounterMode(display=False)
    with counter:
        logits = model(x)
        loss = logits.float().logsumexp(-1).mean()
        if loss.requires_grad:
            loss.backward()
    return counter.get_total_flops()


class Throughput:
    """Rates over the last `window` reports: tokens/s, samples/s, FLOP/s and MFU, all processes together."""

    def __init__(self, world_size: int, flops_per_iter: Optional[int], peak: Optional[float], window: int = 10) -> None:
        self.world_size = world_size
        self.flops_per_iter = flops_per_iter
        self.peak = peak
        self.records: Deque[Tuple[float, int, int, int]] = deque(maxlen=window + 1)

    def update(self, elapsed: float, iters: int, samples: int, tokens: int) -> None:
        """Counts are per process and cumulative since this session started."""
        self.records.append((elapsed, iters, samples, tokens))

    def seconds_left(self, iters_left: int) -> Optional[float]:
        """Time for `iters_left` more micro-batches of each process at the recent window's rate, so a slow start
        (compilation, warm-up) fades out of the ETA; None until the window holds two reports."""
        if len(self.records) < 2:
            return None
        (t0, i0, *_), (t1, i1, *_) = self.records[0], self.records[-1]
        return (t1 - t0) / max(i1 - i0, 1) * iters_left

    def compute(self) -> Dict[str, float]:
        if len(self.records) < 2:
            return {}
        (t0, i0, s0, n0), (t1, i1, s1, n1) = self.records[0], self.records[-1]
        dt = max(t1 - t0, 1e-9)
        rates = {
            "throughput/iters_per_sec": (i1 - i0) / dt,
            "throughput/samples_per_sec": (s1 - s0) * self.world_size / dt,
            "throughput/tokens_per_sec": (n1 - n0) * self.world_size / dt,
        }
        if self.flops_per_iter:
            flops = (i1 - i0) * self.flops_per_iter / dt
            rates["throughput/flops_per_sec"] = flops * self.world_size
            if self.peak:
                rates["throughput/device/mfu"] = flops / self.peak
        return rates


def check_logger(logger_name: str) -> None:
    """Reject an unknown logger, or one whose package is missing, before any work."""
    if logger_name not in LOGGERS:
        raise ValueError(f"Unknown logger {logger_name!r}; choose one of {', '.join(LOGGERS)}")
    package = _LOGGER_PACKAGES.get(logger_name)
    if package and importlib.util.find_spec(package) is None:
        if logger_name == "tensorboard" and importlib.util.find_spec("tensorboardX") is not None:
            return
        raise ValueError(f"--logger_name {logger_name} needs the {package!r} package: pip install {package}")


def make_logger(logger_name: str, out_dir: Path, name: str, log: "LogArgs", resume: bool, log_interval: int) -> Any:
    """A Lightning logger writing under `out_dir/logs` (or to the tracking service)."""
    check_logger(logger_name)
    root = out_dir / "logs"
    if logger_name == "csv":
        from lightning.fabric.loggers import CSVLogger

        return CSVLogger(root_dir=root, name="csv", flush_logs_every_n_steps=log_interval)
    if logger_name == "tensorboard":
        from lightning.fabric.loggers import TensorBoardLogger

        return TensorBoardLogger(root_dir=root, name="tensorboard")
    if logger_name == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(project=log.project or name, name=log.run, group=log.group, resume="allow" if resume else None)
    if logger_name == "mlflow":
        from lightning.pytorch.loggers import MLFlowLogger

        return MLFlowLogger(experiment_name=log.project or name, run_name=log.run, tracking_uri=f"file:{(root / 'mlflow').resolve()}")
    from lightning.pytorch.loggers.litlogger import LitLogger

    return LitLogger(
        root_dir=root, name=log.run or name, teamspace=log.teamspace, metadata=log.metadata, log_model=log.log_model,
        save_logs=log.save_logs, checkpoint_name=log.checkpoint_name,
    )


class Progress:
    """The progress bar (on a terminal) and the log lines, on the first process only."""

    def __init__(self, fabric: Any, total_steps: int, initial_step: int) -> None:
        self.fabric = fabric
        self.bar = None
        if fabric.is_global_zero and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True, leave=True)

    def update(self, step: int, metrics: Optional[Dict[str, float]] = None) -> None:
        """Move the bar to optimizer step `step`; `metrics` (at log steps) refresh the figures beside it."""
        if self.bar is None:
            return
        if metrics is not None:
            postfix = {"loss": f"{metrics['loss']:.3f}"}
            if "throughput/tokens_per_sec" in metrics:
                postfix["tok/s"] = f"{metrics['throughput/tokens_per_sec']:,.0f}"
            postfix["iter"] = f"{metrics['iter_time'] * 1000:.0f}ms"
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(step - self.bar.n)

    def print(self, line: str) -> None:
        if not self.fabric.is_global_zero:
            return
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def log_line(metrics: Dict[str, float], max_steps: int, val_loss: Optional[float]) -> str:
    """One line per log step: where the run is, the loss, speed and time left."""
    parts = [
        f"step {metrics['step']}/{max_steps}",
        f"epoch {metrics['epoch'] + 1}",
        f"loss {metrics['loss']:.4f}",
        f"val {val_loss:.4f}" if val_loss is not None else "val n/a",
        f"lr {metrics['learning_rate']:.2e}",
        f"{metrics['iter_time'] * 1000:.1f} ms/iter",
    ]
    if "throughput/tokens_per_sec" in metrics:
        parts.append(f"{metrics['throughput/tokens_per_sec']:,.0f} tok/s")
    if "throughput/device/mfu" in metrics:
        parts.append(f"MFU {metrics['throughput/device/mfu'] * 100:.1f}%")
    parts.append(f"ETA {timedelta(seconds=int(metrics['remaining_time']))}")
    return " | ".join(parts)


def plot_training(history: List[Dict[str, float]], path: Path) -> None:
    """Loss and validation loss (top) and tokens/s (bottom) against optimizer steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    def series(key: str) -> Tuple[List[float], List[float]]:
        points = [(h["step"], h[key]) for h in history if key in h]
        return [p[0] for p in points], [p[1] for p in points]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(*series("loss"), label="training loss", linewidth=1)
    steps, val = series("val_loss")
    if steps:
        top.plot(steps, val, "o-", label="validation loss")
    top.set_ylabel("loss")
    top.legend()
    top.grid(alpha=0.3)
    bottom.plot(*series("throughput/tokens_per_sec"), color="tab:green", linewidth=1)
    bottom.set_ylabel("tokens/s")
    bottom.set_xlabel("optimizer step")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


class Clock:
    """Training time of this session, excluding validation and checkpointing."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self._start: Optional[float] = None

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self) -> None:
        if self._start is not None:
            self.elapsed += time.perf_counter() - self._start
            self._start = None

    def now(self) -> float:
        return self.elapsed + (time.perf_counter() - self._start if self._start is not None else 0.0)


def announce_start(command: str, model: str, data: Any, method: str, train: Any, optimizer: Any, out_dir: Path,
                   hparams: Dict[str, Any]) -> None:
    """Print the few lines a training command shows before it starts; every setting goes to
    out_dir/hyperparameters.yaml (which `--config` takes to run the same again). Torch's warning about more
    DataLoader workers than CPUs (a paragraph, from two places in each loader) becomes one line here."""
    import os
    import warnings
    from inspect import signature

    import yaml

    from litgpt.train.args import resolve_optimizer

    warnings.filterwarnings("ignore", message=r"This DataLoader will create \d+ worker processes")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = out_dir / "hyperparameters.yaml"
    settings.write_text(yaml.safe_dump(hparams, sort_keys=False), encoding="utf-8")
    cls, init_args = resolve_optimizer(optimizer)
    lr = init_args.get("lr", signature(cls).parameters["lr"].default if "lr" in signature(cls).parameters else None)
    limits = [f"{name} {getattr(train, name):,}" for name in ("max_steps", "epochs", "max_tokens", "max_time") if getattr(train, name)]
    rows = [
        ("model", model),
        ("data", _data_name(data)),
        ("method", method),
        ("steps", f"{' or '.join(limits) or 'until the data ends'}; {train.global_batch_size} samples per step, "
                  f"micro-batches of {train.micro_batch_size}"),
        ("lr", f"{lr:g} ({cls.__name__}), warmup {train.lr_warmup_fraction or train.lr_warmup_steps or 0}"
               f"{'' if train.lr_warmup_fraction else ' steps'}, "
               f"{f'min_lr {train.min_lr:g}' if command == 'pretrain' else 'cosine decay to 0'}" if lr is not None else cls.__name__),
        ("out_dir", str(out_dir)),
        ("settings", f"{settings} (all of them)"),
    ]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if getattr(data, "num_workers", 0) > (cpus or 1):
        rows.insert(2, ("", f"--data.num_workers {data.num_workers} is more than the {cpus} CPUs here: loading may be slow"))
    if os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0":  # launched copies stay quiet
        print("\n".join([f"litgpt {command}"] + [f"  {name:<9}{value}" for name, value in rows]), flush=True)


def _data_name(data: Any) -> str:
    """A data module's class and, where it reads local files, where from."""
    where = [str(getattr(data, name)) for name in ("json_path", "train_data_path", "data_path") if getattr(data, name, None)]
    return f"{type(data).__name__} ({where[0]})" if where else type(data).__name__
