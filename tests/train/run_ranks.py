"""Runs a tiny pretraining on fixed token blocks (or, given "command", a finetuning through
tests/finetune/finetune_helpers.run) and has every process write the weights it
ends with to out_dir/final-rank<N>.pt, so that a test can compare the processes of a distributed run. With
"fsdp_on_cpus": true, several processes run under FSDP instead of DDP (`benchmarks/on_cpus.py --fsdp`).

Fabric starts the processes of a CPU run by spawning, and a spawned process runs this file's top level again
(as `__mp_main__`): the wrapper of `save_final` below is in place in every process, not only in the first.
"""

import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))

from litgpt.data.base import DataModule  # noqa: E402
from litgpt.train import loop  # noqa: E402

_save_final = loop.save_final


def save_final_and_ranks(fabric: Any, model: Any, method: Any, folder: Path, *args: Any) -> None:
    _save_final(fabric, model, method, folder, *args)
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(weights, folder.parent / f"final-rank{fabric.global_rank}.pt")


loop.save_final = save_final_and_ranks


class FixedBlocks(DataModule):
    """`n` random token blocks in a fixed, unshuffled order: one process reads them in order, and under DDP
    Fabric's DistributedSampler deals process r the blocks r, r + N, r + 2N, ... So the 2 processes of a micro-batch
    of 4 see, between them, exactly the 8 blocks that 1 process sees in its 2 micro-batches of 4."""

    def __init__(self, n: int = 16, vocab_size: int = 2048) -> None:
        self.n, self.vocab_size = n, vocab_size

    def connect(self, tokenizer: Any = None, batch_size: int = 1, max_seq_length: Any = None) -> None:
        self.batch_size, self.max_seq_length = batch_size, max_seq_length

    def _blocks(self, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        # a few repeated patterns, so that the loss has something to learn
        patterns = torch.randint(0, self.vocab_size, (4, self.max_seq_length + 1), generator=generator)
        return patterns[torch.arange(self.n) % 4]

    def train_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(list(self._blocks(0)), batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(list(self._blocks(0)[:8]), batch_size=self.batch_size, shuffle=False)


def run(spec: dict) -> None:
    from litgpt.config import Config
    from litgpt.train.args import EvalArgs, TrainArgs
    from litgpt.train.pretrain import setup

    kwargs = {k: Path(v) if k.endswith("_dir") and v is not None else v for k, v in spec["setup"].items()}
    setup(
        model_config=Config(**spec["model"]), data=FixedBlocks(), train=TrainArgs(**spec["train"]),
        eval=EvalArgs(**spec["eval"]), **kwargs,
    )


def finetune(spec: dict) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "finetune"))
    from finetune_helpers import run as run_finetune

    run_finetune(spec["command"], Path(spec["checkpoint_dir"]), Path(spec["data_dir"]), Path(spec["out_dir"]), **spec["kwargs"])


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    if spec.pop("fsdp_on_cpus", False):  # the GPUs' FSDP strategy on CPU processes (FSDP's launcher re-runs this file)
        sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
        import on_cpus

        on_cpus.install_fsdp()
    finetune(spec) if "command" in spec else run(spec)
