"""`litgpt generate_tp`: tensor-parallel generation, one process per device (`litgpt.engine.tp`)."""

import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, List

from litgpt.engine.tp import check_tp, load_tp
from litgpt.generate.flags import MULTI_DEVICE, command

if TYPE_CHECKING:
    import torch

    from litgpt.api import LLM


@command(
    MULTI_DEVICE,
    seed="The random seed (the same on every rank, so that they sample the same tokens).",
    accelerator="cuda, cpu, or auto (cuda when there is a GPU). On the CPU the ranks are CPU processes, which checks a "
    "setup without GPUs.",
    devices="How many devices (processes) to split the model over; it must divide the number of heads, of query "
    "groups and the MLP width. auto is every visible GPU.",
)
def generate_tp(args: SimpleNamespace) -> None:
    """Complete a prompt with tensor parallelism: every block's heads and MLP split over the GPUs, all working at once.

    Starts one process per device itself (torch.multiprocessing, NCCL on GPUs, gloo on the CPU); rank 0 prints.
    """
    import torch.multiprocessing as mp

    from litgpt.api import LLM
    from litgpt.engine.devices import pick_devices
    from litgpt.generate.cli import check_flags, encode_prompt

    check_flags(args)
    chosen = pick_devices(args.accelerator, args.devices)
    llm = LLM.load(str(args.checkpoint_dir), distribute=None)  # resolves the folder (downloading a known name) and checks it
    _check_split(llm, args, chosen)
    encode_prompt(llm, args)  # a prompt too long for the context is refused here, not by every rank
    args = SimpleNamespace(**{**vars(args), "checkpoint_dir": llm.checkpoint_dir})
    rendezvous = tempfile.mkdtemp(prefix="litgpt-tp-")
    try:
        mp.start_processes(
            _run_rank,
            args=(chosen, str(Path(rendezvous) / "store"), args),
            nprocs=len(chosen),
            start_method="spawn",
        )
    finally:
        shutil.rmtree(rendezvous, ignore_errors=True)


def _check_split(llm: "LLM", args: SimpleNamespace, chosen: List["torch.device"]) -> None:
    """Refuse here, as one line and before any process starts, what the ranks would refuse."""
    from litgpt.checkpoint import precision_dtype
    from litgpt.finetuned import finetuned_kind
    from litgpt.quantize import check_quantize

    folder = llm.checkpoint_dir
    if finetuned_kind(folder) is not None:
        raise ValueError(f"{folder} holds LoRA or adapter weights; merge them first (`litgpt merge_lora`) to split the model")
    if not (folder / "lit_model.pth").is_file():
        raise FileNotFoundError(f"No lit_model.pth in {str(folder)!r}; convert a Hugging Face folder with `litgpt convert_to_litgpt`")
    check_tp(llm.config, len(chosen))
    precision_dtype(args.precision, chosen[0])
    if args.quantize is not None:
        check_quantize(args.quantize, chosen[0])


def _run_rank(rank: int, chosen: List["torch.device"], store_path: str, args: SimpleNamespace) -> None:
    """One process of `generate_tp`: join the group, load this rank's slice, generate (rank 0 prints)."""
    import torch
    import torch.distributed as dist

    from litgpt.api import LLM
    from litgpt.engine.core import compiled_decode_step, decode_step
    from litgpt.generate.cli import print_completions, print_memory

    device, world_size = chosen[rank], len(chosen)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))  # the ranks share the cores
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", init_method=f"file://{store_path}", rank=rank, world_size=world_size
    )
    try:
        llm = LLM.load(str(args.checkpoint_dir), distribute=None)
        llm.model = load_tp(args.checkpoint_dir, rank, world_size, device, precision=args.precision, quantize=args.quantize)
        llm.quantize = args.quantize
        # no CUDA graphs: a graph would have to capture the all-reduces between the ranks
        llm.decode_step = compiled_decode_step() if args.compile else decode_step
        print_completions(llm, args, show=rank == 0)
        if rank == 0:
            print_memory([device], note=" per GPU (rank 0)")
    finally:
        dist.destroy_process_group()
