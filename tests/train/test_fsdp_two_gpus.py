"""FSDP, the path `litgpt pretrain --devices N` takes on N > 1 GPUs, trains like one GPU, and its checkpoints
resume on FSDP (an FSDP checkpoint continues as the uninterrupted run) and on another number of GPUs (and one
GPU's on FSDP). Needs two CUDA GPUs: Lightning's FSDPStrategy refuses
CPUs ("FSDP is only available on GPU"), and torch's FullyShardedDataParallel (FSDP1, which that strategy wraps) raises
"RuntimeError: FSDP needs a non-CPU accelerator device, but no accelerator device is detected." on a CPU-only torch
2.13 with gloo even when Lightning's check is passed over (FSDP2's fully_shard does run there, but the loop never
takes it).

Runs benchmarks/pretrain_scaling.py on its tiny model: the real command in subprocesses (FSDP's launcher starts
one process per GPU by re-running the command), on token blocks that are the same for any number of processes.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "pretrain_scaling.py"

pytestmark = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP needs two CUDA GPUs")


def test_fsdp_on_two_gpus_matches_one_and_resumes_across_counts(tmp_path):
    command = [sys.executable, str(SCRIPT), "--tiny", "--devices", "1", "2", "--resume", "2:2", "2:1", "1:2", "--compile", "false",
               "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cases = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    scaling = {c["devices"]: c for c in cases if c["bench"] == "pretrain_scaling"}
    resumes = {(c["saved_with"], c["resumed_with"]): c for c in cases if c["bench"] == "pretrain_resume"}

    assert scaling[2]["strategy"] == "FSDP" and "error" not in scaling[2], scaling[2]
    # 32-true, the same weights and the same global batch: only the order of sums differs
    assert scaling[2]["losses_match"], (scaling[1]["first_losses"], scaling[2]["first_losses"])
    for pair in ((2, 2), (2, 1), (1, 2)):  # an FSDP save resumed on FSDP, and across device counts
        assert resumes[pair].get("ok"), resumes[pair]
