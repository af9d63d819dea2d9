"""FSDP, the path `litgpt pretrain --devices N` takes on N > 1 GPUs, trains like one device, and its checkpoints
resume on FSDP (an FSDP checkpoint continues as the uninterrupted run) and on another number of devices (and one
device's on FSDP).

Runs benchmarks/pretrain_scaling.py on its tiny model: the real command in subprocesses (FSDP's launcher starts
one process per device by re-running the command), on token blocks that are the same for any number of processes,
at a constant learning rate (the schedule's rate at a step follows the micro-batches per step). Without GPUs the
command takes DDP; `--fsdp_on_cpus` gives two CPU processes the GPUs' FSDP strategy over gloo
(`benchmarks/on_cpus.py --fsdp`), so the sharded path runs in every test run, and on two GPUs over NCCL where there are.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "pretrain_scaling.py"


def check_fsdp_runs(tmp_path: Path, *flags: str) -> None:
    command = [sys.executable, str(SCRIPT), "--tiny", "--devices", "1", "2", "--resume", "2:2", "2:1", "1:2", "--compile", "false",
               "--out", str(tmp_path), *flags]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cases = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    scaling = {c["devices"]: c for c in cases if c["bench"] == "pretrain_scaling"}
    resumes = {(c["saved_with"], c["resumed_with"]): c for c in cases if c["bench"] == "pretrain_resume"}

    assert scaling[2]["strategy"].startswith("FSDP") and "error" not in scaling[2], scaling[2]
    # 32-true, the same weights and the same global batch: only the order of sums differs
    assert scaling[2]["losses_match"], (scaling[1]["first_losses"], scaling[2]["first_losses"])
    assert scaling[1]["first_losses"][0] > scaling[1]["first_losses"][-1]  # it learns: the steps are not all alike
    for pair in ((2, 2), (2, 1), (1, 2)):  # an FSDP save resumed on FSDP, and across device counts
        assert resumes[pair].get("ok"), resumes[pair]


def test_fsdp_on_two_cpu_processes_matches_one_and_resumes_across_counts(tmp_path):
    check_fsdp_runs(tmp_path, "--fsdp_on_cpus")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP over NCCL needs two CUDA GPUs")
def test_fsdp_on_two_gpus_matches_one_and_resumes_across_counts(tmp_path):
    check_fsdp_runs(tmp_path)
