"""`litgpt generate_tp`: tensor-parallel generation, one process per device (`litgpt.engine.tp`)."""

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

from litgpt.engine.devices import Accelerator, Devices
from litgpt.engine.tp import check_tp, load_tp
from litgpt.quantize import Quantize


def generate_tp(
    checkpoint_dir: Path,
    prompt: str = "What food do llamas eat?",
    *,
    sys_prompt: Optional[str] = None,
    num_samples: int = 1,
    max_new_tokens: int = 50,
    top_k: Optional[int] = 50,
    top_p: float = 1.0,
    temperature: float = 0.8,
    quantize: Quantize = None,
    precision: Optional[str] = None,
    compile: bool = False,
    seed: int = 1234,
    accelerator: Accelerator = "auto",
    devices: Devices = "auto",
) -> None:
    """Complete a prompt with tensor parallelism: every block's heads and MLP split over the GPUs, all working at once.

    Starts one process per device itself (torch.multiprocessing, NCCL on GPUs, gloo on the CPU); rank 0 prints.

    Args:
        checkpoint_dir: A checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files), or ORG/NAME
            under checkpoints/.
        prompt: The text to complete.
        sys_prompt: The system prompt, for prompt styles that have one.
        num_samples: How many completions to draw.
        max_new_tokens: The most tokens to generate per completion.
        top_k: Sample only among the k most likely tokens (1 is greedy).
        top_p: Sample only among the most likely tokens whose probabilities add up to top_p.
        temperature: Scales the logits: 0 is greedy, higher is more random.
        quantize: bitsandbytes quantization of the weights (CUDA only): bnb.nf4, bnb.nf4-dq, bnb.fp4, bnb.fp4-dq, bnb.int8.
        precision: bf16-true, 16-true or 32-true; default bf16 on a GPU that has it, else 32-true.
        compile: Compile the decoding step with torch.compile (slower start, faster decoding).
        seed: The random seed (the same on every rank, so that they sample the same tokens).
        accelerator: cuda, cpu, or auto (cuda when there is a GPU). On the CPU the ranks are CPU processes,
            which checks a setup without GPUs.
        devices: How many devices (processes) to split the model over; it must divide the number of heads, of
            query groups and the MLP width. auto is every visible GPU.
    """
    import torch.multiprocessing as mp

    from litgpt.api import LLM
    from litgpt.checkpoint import precision_dtype
    from litgpt.finetuned import finetuned_kind
    from litgpt.engine.devices import pick_devices
    from litgpt.engine.sampling import check_sampling_args
    from litgpt.quantize import check_quantize

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    check_sampling_args(temperature, top_k, top_p)
    chosen = pick_devices(accelerator, devices)
    llm = LLM.load(str(checkpoint_dir), distribute=None)  # resolves the folder (downloading a known name) and checks it
    folder = llm.checkpoint_dir
    if finetuned_kind(folder) is not None:
        raise ValueError(f"{folder} holds LoRA or adapter weights; merge them first (`litgpt merge_lora`) to split the model")
    if not (folder / "lit_model.pth").is_file():
        raise FileNotFoundError(f"No lit_model.pth in {str(folder)!r}; convert a Hugging Face folder with `litgpt convert_to_litgpt`")
    check_tp(llm.config, len(chosen))
    # what the ranks would refuse is refused here, as one line, before any process starts
    precision_dtype(precision, chosen[0])
    if quantize is not None:
        check_quantize(quantize, chosen[0])
    n_prompt = llm.tokenizer.encode(llm.prompt_style.apply(prompt, sys_prompt=sys_prompt)).numel()
    if n_prompt + max_new_tokens - 1 > llm.config.block_size:
        raise ValueError(
            f"The prompt ({n_prompt} tokens) plus max_new_tokens ({max_new_tokens}) do not fit the model's context of "
            f"{llm.config.block_size} tokens"
        )
    settings = dict(
        prompt=prompt, sys_prompt=sys_prompt, num_samples=num_samples, max_new_tokens=max_new_tokens, top_k=top_k,
        top_p=top_p, temperature=temperature, seed=seed,
    )
    rendezvous = tempfile.mkdtemp(prefix="litgpt-tp-")
    try:
        mp.start_processes(
            _run_rank,
            args=(len(chosen), chosen[0].type, str(Path(rendezvous) / "store"), folder, precision, quantize, compile, settings),
            nprocs=len(chosen),
            start_method="spawn",
        )
    finally:
        shutil.rmtree(rendezvous, ignore_errors=True)


def _run_rank(
    rank: int,
    world_size: int,
    device_type: str,
    store_path: str,
    checkpoint_dir: Path,
    precision: Optional[str],
    quantize: Quantize,
    compile: bool,
    settings: Dict[str, Any],
) -> None:
    """One process of `generate_tp`: join the group, load this rank's slice, generate (rank 0 prints)."""
    import torch
    import torch.distributed as dist

    from litgpt.api import LLM
    from litgpt.generate.cli import print_completions
    from litgpt.engine.core import compiled_decode_step, decode_step

    if device_type == "cuda":
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))  # the ranks share the cores
    dist.init_process_group(
        "nccl" if device_type == "cuda" else "gloo", init_method=f"file://{store_path}", rank=rank, world_size=world_size
    )
    try:
        llm = LLM.load(str(checkpoint_dir), distribute=None)
        llm.model = load_tp(checkpoint_dir, rank, world_size, device, precision=precision, quantize=quantize)
        llm.quantize = quantize
        # no CUDA graphs: a graph would have to capture the all-reduces between the ranks
        llm.decode_step = compiled_decode_step() if compile else decode_step
        print_completions(llm, show=rank == 0, **settings)
        if rank == 0 and device_type == "cuda":
            print(f"Memory used: {torch.cuda.max_memory_allocated(device) / 1e9:.02f} GB per GPU (rank 0)", file=sys.stderr)
    finally:
        dist.destroy_process_group()
