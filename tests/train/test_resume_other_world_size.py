"""Resuming a pretraining checkpoint on another number of processes (DDP over gloo on CPUs, FSDP on GPUs) continues
the run: the step counter, the token count, the data position and the weights (under a constant learning rate:
LitGPT's pretraining schedule of a step depends on the micro-batches per step, see tests/finetune/test_lr_schedule.py).

The runs are subprocesses: on GPUs, FSDP's launcher starts the other processes by re-running the command, which
must not be pytest."""

from pathlib import Path

import pytest
import torch

from train_helpers import logged, run_subprocess, tiny_spec

STEPS, SAVED_AT = 6, 3


def test_batches_carry_the_data_position_to_another_number_of_processes():
    """`index` batches on each of N processes of a DistributedSampler is `index * N / M` batches on each of M."""
    from torch.utils.data import DataLoader, DistributedSampler

    from litgpt.train.loop import Batches

    data = list(range(48))

    def loader(world_size: int, rank: int) -> DataLoader:
        sampler = DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=True, seed=7)
        return DataLoader(data, batch_size=2, sampler=sampler)

    for before, after in ((2, 4), (4, 2), (2, 1)):
        seen, states = [], []
        for rank in range(before):
            batches = Batches(loader(before, rank), before)
            seen += [x for _ in range(6 if before == 2 else 3) for x in next(batches).tolist()]
            states.append(batches.state_dict())
        for rank in range(after):
            # every process loads rank 0's state, as Fabric does
            resumed = Batches(loader(after, rank), after)
            resumed.load_state_dict(states[0])
            assert resumed.saved_world_size == before and resumed.epoch == 0
            seen += [x for _ in range(len(resumed.loader) - resumed.index) for x in next(resumed).tolist()]
        assert sorted(seen) == data, (before, after)  # the rest of the epoch, no sample twice or left out


def _spec(out_dir: Path, text_dir: Path, **train) -> dict:
    """A constant lr (SGD): LitGPT's pretraining lr of a step follows its micro-batches, whose number per step the
    number of processes changes, so only a constant schedule is the same on both sides of such a resume."""
    spec = tiny_spec(out_dir, text_dir, max_steps=STEPS, lr_warmup_steps=0, min_lr=0.01, **train)
    spec["eval"]["interval"] = 100
    spec["setup"]["optimizer"] = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.01}}
    return spec


def _resume(tmp_path: Path, text_dir: Path, saved_with: int, resumed_with: int) -> None:
    whole = tmp_path / "whole"
    spec = _spec(whole, text_dir, save_interval=SAVED_AT)
    spec["setup"]["devices"] = saved_with
    run_subprocess(spec)

    resumed = tmp_path / "resumed"
    spec = _spec(resumed, text_dir)
    spec["setup"].update(devices=resumed_with, resume=str(whole / f"step-{SAVED_AT:08d}"))
    run_subprocess(spec)

    assert sorted(logged(resumed)) == list(range(SAVED_AT + 1, STEPS + 1))  # the step counter goes on
    for key in ("learning_rate", "total_tokens", "iter"):
        expected = {step: value for step, value in logged(whole, key).items() if step > SAVED_AT}
        if key == "iter":  # micro-batches of one process: 8 samples a step, 4 a micro-batch, spread over the processes
            expected = {step: step * 2 / resumed_with for step in expected}
        assert logged(resumed, key) == pytest.approx(expected, rel=1e-6), key
    # the same weights at the checkpoint and the same data after it: the losses of the uninterrupted run
    assert logged(resumed) == pytest.approx({s: v for s, v in logged(whole).items() if s > SAVED_AT}, rel=1e-4)
    a = torch.load(whole / "final" / "lit_model.pth", weights_only=True)["model"]
    b = torch.load(resumed / "final" / "lit_model.pth", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)


def test_two_processes_checkpoint_resumes_on_one(tmp_path, text_dir):
    _resume(tmp_path, text_dir, saved_with=2, resumed_with=1)


def test_one_process_checkpoint_resumes_on_two(tmp_path, text_dir):
    _resume(tmp_path, text_dir, saved_with=1, resumed_with=2)
