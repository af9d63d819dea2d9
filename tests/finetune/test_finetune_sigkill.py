"""A LoRA finetuning killed with SIGKILL, as a crash or a preempted job ends, resumes exactly with --resume auto."""

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import torch

from finetune_helpers import weights

REPO_ROOT = Path(__file__).resolve().parents[2]
# the CLI as typed, in a process that SIGKILLs itself when it logs step `kill_at` (after the step-4 checkpoint)
SCRIPT = """
import os, signal, sys
from litgpt.train import monitor
from litgpt.__main__ import main

kill_at = int(os.environ.get("KILL_AT_STEP", "0"))
original = monitor.log_line

def log_line_then_die(metrics, *args):
    if metrics["step"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(metrics, *args)

monitor.log_line = log_line_then_die
main(sys.argv[1:])
"""


def run_killable(command: str, checkpoint: Path, out: Path, data: List[str], *extra: str, kill_at: int = 0,
                 preamble: str = "") -> subprocess.CompletedProcess:
    """`litgpt COMMAND` (a LoRA finetuning) of 8 short steps in a subprocess that SIGKILLs itself at step `kill_at`
    (0: never); `data` are the --data flags; `preamble` is Python code the process runs first."""
    args = [
        command, str(checkpoint), "--out_dir", str(out), "--precision", "32-true", *data, "--data.num_workers", "0",
        "--train.max_steps", "8", "--train.global_batch_size", "2", "--train.micro_batch_size", "1",
        "--train.lr_warmup_steps", "1", "--train.save_interval", "4", "--train.log_interval", "1",
        "--eval.interval", "100", "--eval.max_iters", "1", "--lora_r", "4", "--lora_alpha", "8",
        "--optimizer", '{"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.02}}', *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "KILL_AT_STEP": str(kill_at)}
    return subprocess.run([sys.executable, "-c", preamble + SCRIPT, *args], env=env, capture_output=True, text=True, timeout=300)


def finetune(checkpoint: Path, data: Path, out: Path, *extra: str, kill_at: int = 0, preamble: str = "") -> subprocess.CompletedProcess:
    json_data = ["--data", "JSON", "--data.json_path", str(data), "--data.prompt_style", "alpaca"]
    return run_killable("finetune_lora", checkpoint, out, json_data, "--logger_name", "csv", *extra, kill_at=kill_at, preamble=preamble)


def logged(out_dir: Path) -> dict:
    """{step: loss} from every CSV log of the run; a resumed run's log (a later version) overrides the killed one's."""
    import csv

    by_step = {}
    for path in sorted(Path(out_dir, "logs").rglob("metrics.csv")):
        for row in csv.DictReader(open(path)):
            if row.get("loss"):
                by_step[int(row["step"])] = float(row["loss"])
    return by_step


def test_sigkill_then_resume_auto_equals_an_uninterrupted_run(tiny_checkpoint, json_data, tmp_path):
    import yaml

    config = yaml.safe_load((tiny_checkpoint / "model_config.yaml").read_text())
    config["block_size"] = 256  # room for the Alpaca prompts
    (tiny_checkpoint / "model_config.yaml").write_text(yaml.safe_dump(config))

    whole = finetune(tiny_checkpoint, json_data, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    killed = finetune(tiny_checkpoint, json_data, tmp_path / "killed", kill_at=6)
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "killed" / "step-000004").is_dir() and not (tmp_path / "killed" / "final").exists()
    resumed = finetune(tiny_checkpoint, json_data, tmp_path / "killed", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr

    a = weights(tmp_path / "whole" / "final" / "lit_model.pth.lora")
    b = weights(tmp_path / "killed" / "final" / "lit_model.pth.lora")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    uninterrupted, after_resume = logged(tmp_path / "whole"), logged(tmp_path / "killed")
    assert sorted(after_resume) == sorted(uninterrupted) == list(range(1, 9))
    assert after_resume == uninterrupted  # the resumed steps 5-8 log what the uninterrupted run logged
