"""Finetuning on two CPU processes (DDP over gloo, started by Fabric) trains like one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from finetune_helpers import losses, weights

RANKS = Path(__file__).parents[1] / "train" / "run_ranks.py"


def finetune_in_subprocess(out_dir: Path, checkpoint_dir: Path, data_dir: Path, devices: int) -> None:
    """LoRA finetuning through run_ranks.py, which has every process write its final weights beside final/."""
    # the global batch (2) is the whole training set: one process reads both records in 2 micro-batches, two
    # processes read one each, whatever order their samplers draw; no dropout, so nothing else differs. The plain
    # prompt style keeps the records apart within the tiny model's 64 tokens (Alpaca's preamble alone fills them)
    kwargs = dict(lora_r=4, lora_alpha=8, lora_dropout=0.0, prompt_style="default", devices=devices, train=dict(max_steps=6), eval=dict(interval=100))
    spec = dict(command="finetune_lora", checkpoint_dir=str(checkpoint_dir), data_dir=str(data_dir), out_dir=str(out_dir), kwargs=kwargs)
    root = str(Path(__file__).parents[2])
    result = subprocess.run([sys.executable, str(RANKS), json.dumps(spec)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": root})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_lora_on_two_cpu_processes_syncs_and_matches_one(tiny_checkpoint, tmp_path):
    from finetune_helpers import RECORDS

    data = tmp_path / "sft"
    data.mkdir()
    (data / "train.json").write_text(json.dumps(RECORDS[:2]))  # two records that differ: each process learns another
    (data / "val.json").write_text(json.dumps(RECORDS[2:3]))
    for devices in (1, 2):
        finetune_in_subprocess(tmp_path / f"devices-{devices}", tiny_checkpoint, data, devices)

    one = torch.load(tmp_path / "devices-1" / "final-rank0.pt", weights_only=True)
    rank0 = torch.load(tmp_path / "devices-2" / "final-rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "devices-2" / "final-rank1.pt", weights_only=True)
    lora = [name for name in one if "lora_" in name]
    assert lora and one.keys() == rank0.keys() == rank1.keys()
    for name in lora:
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between the two processes"
        torch.testing.assert_close(rank0[name], one[name], rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    assert any(one[name].abs().sum() > 0 for name in lora if "lora_B" in name)  # LoRA's B starts at zero: it trained
    assert losses(tmp_path / "devices-2") == pytest.approx(losses(tmp_path / "devices-1"), rel=1e-4)
    saved = weights(tmp_path / "devices-2" / "final" / "lit_model.pth.lora")
    assert saved.keys() == weights(tmp_path / "devices-1" / "final" / "lit_model.pth.lora").keys()
