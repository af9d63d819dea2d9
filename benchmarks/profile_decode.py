"""Where the time of one batch-1 decode step goes: the step's GPU kernels, summed over steps, longest first.

    python benchmarks/profile_decode.py --model Llama-3.2-1B --step compiled

Profiles `--steps` replays of the decode step (after a warm-up generation that captures and compiles it) with
torch.profiler's CUDA activity, and prints the GPU time per step by kernel kind (matmul, attention, inductor's
Triton kernels, ...) and per kernel: calls per step, µs per step, and the share of the step.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import profile_kernels  # noqa: E402
from decode_throughput import build, make_step  # noqa: E402

from litgpt.engine.batcher import generate_tokens  # noqa: E402


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Llama-3.2-1B")
    parser.add_argument("--step", default="compiled", choices=["eager", "graphs", "compiled", "whole"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rows", type=int, default=30, help="kernels listed")
    parser.add_argument("--batch", type=int, default=1, help="sequences decoded by each step (their caches full of random values)")
    args = parser.parse_args()
    prompt_len, new = 128, 64
    model = build(args.model, prompt_len + new + args.steps)
    step = make_step(args.step)
    start = prompt_len + new
    if args.batch == 1:
        prompt = torch.randint(0, model.config.vocab_size, (prompt_len,), device="cuda")
        tokens = list(generate_tokens(model, prompt, new, temperature=0.0, step=step))  # capture, compile
        token = torch.tensor([[tokens[-1]]], device="cuda")
    else:
        model.set_kv_cache(batch_size=args.batch)
        token = torch.randint(0, model.config.vocab_size, (args.batch, 1), device="cuda")
        for i in range(2):  # capture, compile
            step(model, token, torch.full((args.batch, 1), start + i, device="cuda"), start + i + 1)
    positions = [torch.full((args.batch, 1), start + i, device="cuda") for i in range(args.steps)]
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for i in range(args.steps):
        step(model, token, positions[i], start + i + 1)
    end.record()
    torch.cuda.synchronize()
    wall = begin.elapsed_time(end) * 1e3 / args.steps
    print(f"{args.model} {args.step}, {args.batch} rows: {wall:.0f} µs per step on the clock")
    replay = iter(range(args.steps))

    def one_step():
        i = next(replay)
        step(model, token, positions[i], start + i + 1)

    profile_kernels(one_step, args.steps, args.rows, f"{args.model} {args.step} decode step")


if __name__ == "__main__":
    main()
