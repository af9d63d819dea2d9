"""The learning rate finetuning applies at each optimizer step, read back from a real run's log, against LitGPT's
finetuning schedule built from torch's own schedulers as LitGPT builds it (finetune/lora.py, full.py, adapter*.py:
LambdaLR(step / warmup), then CosineAnnealingLR(T_max = lr_max_steps - warmup) in a SequentialLR with the milestone
at the warmup, stepped after each optimizer step; lr_max_steps = min(epochs x whole steps per epoch, max_steps))."""

import csv
import math
import warnings
from pathlib import Path

import pytest

from finetune_helpers import RECORDS, run

LR = 0.02


def litgpt_schedule(steps: int, warmup: int, lr_max_steps: int) -> list:
    """The lr of each of `steps` optimizer steps under LitGPT's finetuning scheduler."""
    import torch

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    warm = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: step / warmup)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=lr_max_steps - warmup)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, cosine], milestones=[warmup])
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR passes an epoch to the cosine at the milestone (deprecated)
        for _ in range(steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    return lrs


def applied(out_dir: Path) -> dict:
    """The lr the optimizer held in each step (0-based), from the run's CSV log (logged after the step)."""
    path = next((out_dir / "logs").rglob("metrics.csv"))
    with open(path, newline="") as f:
        return {int(r["step"]) - 1: float(r["learning_rate"]) for r in csv.DictReader(f) if r.get("learning_rate")}


@pytest.mark.parametrize(
    "command, train, lr_max_steps",
    [
        # warmup over 3 steps, then down to 0 at max_steps; two micro-batches per step
        ("finetune_lora", dict(max_steps=8, lr_warmup_steps=3, global_batch_size=2), 8),
        # by epochs: 6 records in micro-batches of 1, 4 per step, is 1 whole step per epoch for LitGPT's horizon
        # (4 epochs: 4), while the run takes 24 micro-batches (6 steps): the cosine passes 0 and rises again
        ("finetune_full", dict(max_steps=None, epochs=4, lr_warmup_steps=1, global_batch_size=4), 4),
    ],
)
def test_finetuning_lr_per_step_is_litgpts_scheduler(command, train, lr_max_steps, tiny_checkpoint, json_data, tmp_path):
    out = tmp_path / "out"
    # min_lr above the lr: finetuning never reads it (LitGPT's neither), so it is neither refused nor used
    run(command, tiny_checkpoint, json_data, out, train=dict(min_lr=0.05, **train), eval=dict(interval=100, final_validation=False))
    got = applied(out)
    steps = train["max_steps"] or train["epochs"] * len(RECORDS) // train["global_batch_size"]
    assert sorted(got) == list(range(steps))
    expected = litgpt_schedule(steps, train["lr_warmup_steps"], lr_max_steps)
    assert expected[0] == 0.0 and expected[train["lr_warmup_steps"]] == pytest.approx(LR)  # step 0, the step after warmup
    for step in range(steps):
        assert math.isclose(got[step], expected[step], rel_tol=1e-9, abs_tol=1e-12), (step, got, expected)


def test_finetune_help_says_min_lr_is_for_pretraining_only():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "litgpt", "finetune_lora", "--help"], capture_output=True, text=True, timeout=60)
    help_text = " ".join(result.stdout.split())
    assert "--train.min_lr MIN_LR The learning rate at the end of the cosine decay (pretraining only: finetuning decays to 0" in help_text


def test_pretraining_lr_per_step_is_litgpts_get_lr():
    """Pretraining keeps LitGPT's pretrain.py schedule: get_lr(lr, it, warmup_iters, max_iters, min_lr) set before
    each micro-batch `it` (from 0), so an optimizer step of `accum` micro-batches takes its last micro-batch's; its
    horizon is the micro-batches of --train.max_tokens and its warmup min(max_iters, warmup steps x accum)."""
    from types import SimpleNamespace

    from litgpt.train.args import TrainArgs
    from litgpt.train.loop import Method, lr_schedule

    def get_lr(it, warmup_iters, max_iters, min_lr):  # LitGPT's formula, as its pretrain.py states it
        if it < warmup_iters:
            return LR * it / warmup_iters
        if it > max_iters:
            return min_lr
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * (it - warmup_iters) / (max_iters - warmup_iters))) * (LR - min_lr)

    # max_tokens 4000 of 2 x 4-token micro-batches on 2 processes: 250 micro-batches, warmup 5 x 4 of them
    train = TrainArgs(max_tokens=4000, micro_batch_size=2, global_batch_size=16, lr_warmup_steps=5, min_lr=0.001)
    lr_at = lr_schedule(SimpleNamespace(train=train, method=Method(pretraining=True)), 4, 2, 4, None, max_steps=62)
    for step in range(62):
        assert math.isclose(lr_at(step, LR), get_lr((step + 1) * 4 - 1, 20, 250, 0.001), rel_tol=1e-12), step
