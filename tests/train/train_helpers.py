"""Helpers of the training tests: a tiny model's arguments, running it in or out of process, reading its logs."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import litgpt.data

CORPUS = Path(litgpt.data.__file__).parent / "corpus"
RUNNER = Path(__file__).parent / "run_tiny.py"

TINY_MODEL = dict(
    name="tiny", block_size=64, vocab_size=2048, padded_vocab_size=2048, n_layer=2, n_head=2, n_embd=32,
    rotary_percentage=1.0, parallel_residual=False, bias=False, norm_class_name="RMSNorm",
    mlp_class_name="LLaMAMLP", intermediate_size=64,
)


def tiny_spec(out_dir: Path, text_dir: Path, **train: Any) -> Dict[str, Any]:
    """Arguments of a tiny pretraining run, as JSON-able data (the subprocess runner takes the same)."""
    return {
        "model": TINY_MODEL,
        "data": str(text_dir),
        "train": {
            "global_batch_size": 8, "micro_batch_size": 4, "max_seq_length": 32, "max_steps": 20, "log_interval": 1,
            "save_interval": None, "lr_warmup_steps": 2, "max_norm": 1.0, "min_lr": 1e-4, **train,
        },
        "eval": {"interval": 10, "max_iters": 2},
        "setup": {
            "out_dir": str(out_dir), "tokenizer_dir": str(CORPUS), "devices": 1, "logger_name": "csv",
            "precision": "32-true", "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
        },
    }


def run_in_process(spec: Dict[str, Any]) -> None:
    from litgpt.config import Config
    from litgpt.data import TextFiles
    from litgpt.train.args import EvalArgs, TrainArgs
    from litgpt.train.pretrain import setup

    kwargs = {k: Path(v) if k.endswith("_dir") and v is not None else v for k, v in spec["setup"].items()}
    setup(
        model_config=Config(**spec["model"]), data=TextFiles(Path(spec["data"]), num_workers=0),
        train=TrainArgs(**spec["train"]), eval=EvalArgs(**spec["eval"]), **kwargs,
    )


def run_subprocess(spec: Dict[str, Any], check: bool = True, runner: Path = RUNNER) -> subprocess.CompletedProcess:
    root = str(Path(litgpt.data.__file__).parents[2])  # the checkout, which may not be installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, str(runner), json.dumps(spec)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"run failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def logged(out_dir: Path, key: str = "loss") -> Dict[int, float]:
    """`key` by optimizer step from every CSV log of a run; a resumed run's later log wins where they overlap."""
    values: Dict[int, float] = {}
    for path in sorted((out_dir / "logs" / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get(key):
                    values[int(row["step"])] = float(row[key])
    return values
