"""Finetuning on two CPU processes trains like one process: under DDP over gloo (what the commands take without GPUs),
and under the FSDP strategy they take on several GPUs (`benchmarks/on_cpus.py --fsdp`), whose checkpoints also resume on
either count and whose final weights load and generate in one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from finetune_helpers import losses, weights

RANKS = Path(__file__).parents[1] / "train" / "run_ranks.py"


def finetune_in_subprocess(out_dir: Path, checkpoint_dir: Path, data_dir: Path, devices: int, fsdp: bool = False,
                           command: str = "finetune_lora", **overrides) -> None:
    """A finetuning (LoRA unless told) through run_ranks.py, which has every process write its final weights beside
    final/; `fsdp`: under FSDP."""
    # the global batch (2) is the whole training set: one process reads both records in 2 micro-batches, two
    # processes read one each, whatever order their samplers draw; no dropout, so nothing else differs. The plain
    # prompt style keeps the records apart within the tiny model's 64 tokens (Alpaca's preamble alone fills them)
    kwargs = dict(prompt_style="default", devices=devices, train=dict(max_steps=6), eval=dict(interval=100))
    kwargs.update(overrides)
    if command == "finetune_lora":
        kwargs.update(lora_r=4, lora_alpha=8, lora_dropout=0.0)
    spec = dict(command=command, checkpoint_dir=str(checkpoint_dir), data_dir=str(data_dir), out_dir=str(out_dir), kwargs=kwargs,
                fsdp_on_cpus=fsdp)
    root = str(Path(__file__).parents[2])
    result = subprocess.run([sys.executable, str(RANKS), json.dumps(spec)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": root})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def two_records(tmp_path: Path) -> Path:
    from finetune_helpers import RECORDS

    data = tmp_path / "sft"
    data.mkdir()
    (data / "train.json").write_text(json.dumps(RECORDS[:2]))  # two records that differ: each process learns another
    (data / "val.json").write_text(json.dumps(RECORDS[2:3]))
    return data


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_lora_on_two_cpu_processes_syncs_and_matches_one(tiny_checkpoint, tmp_path, fsdp):
    data = two_records(tmp_path)
    for devices in (1, 2):
        finetune_in_subprocess(tmp_path / f"devices-{devices}", tiny_checkpoint, data, devices, fsdp=fsdp and devices == 2)

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


@pytest.mark.parametrize("command", ["finetune_full", "finetune_lora"])
def test_finetuning_under_fsdp_resumes_on_either_count_and_generates(tiny_checkpoint, tmp_path, command):
    """`finetune_full` / `finetune_lora --devices 2` under FSDP saves a checkpoint that continues the run on two
    processes (FSDP) and on one, and its final weights (LoRA's merged) are a plain checkpoint that `LLM` loads and
    generates from in one process."""
    from litgpt import LLM

    data = two_records(tmp_path)
    train = dict(max_steps=4, save_interval=2)
    whole = tmp_path / "whole"
    finetune_in_subprocess(whole, tiny_checkpoint, data, 2, fsdp=True, command=command, train=train)
    checkpoint = whole / "step-000002"
    for devices in (2, 1):
        resumed = tmp_path / f"resumed-on-{devices}"
        finetune_in_subprocess(resumed, tiny_checkpoint, data, devices, fsdp=devices == 2, command=command, train=train,
                               resume=str(checkpoint))
        assert losses(resumed) == pytest.approx(losses(whole)[2:], rel=1e-4), devices  # steps 3-4
        a, b = weights(whole / "final" / "lit_model.pth"), weights(resumed / "final" / "lit_model.pth")
        assert a.keys() == b.keys() == weights(tiny_checkpoint / "lit_model.pth").keys()
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=lambda m: f"{devices}: {name}: {m}")
    assert any(not torch.equal(a[name], weights(tiny_checkpoint / "lit_model.pth")[name]) for name in a)  # it trained

    llm = LLM.load(str(whole / "final"))
    text = llm.generate("Say hello.", max_new_tokens=5, temperature=0)
    assert isinstance(text, str) and text == llm.generate("Say hello.", max_new_tokens=5, temperature=0)
