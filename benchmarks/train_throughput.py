"""Pretraining-step throughput of a registry model on random tokens: tokens/s, MFU and peak memory.

    python benchmarks/train_throughput.py --model tiny-llama-1.1b --seq 2048 --micro_batch 16 --compile
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import cuda_time_ms, emit, matmul_peak_tflops, table  # noqa: E402

from litgpt.config import Config  # noqa: E402
from litgpt.model import GPT  # noqa: E402


def flops_per_token(config: Config, n_params: int, seq: int) -> float:
    """Training FLOPs per token: 6 N for the matmuls with the weights, plus attention's scores and values."""
    attention = 6 * 2 * config.n_layer * config.n_head * config.head_size * seq / 2  # causal: half the scores
    return 6 * n_params + attention


def run(model_name: str, seq: int, micro_batch: int, precision: str, compile: bool, iters: int, peak: float) -> dict:
    config = Config.from_name(model_name, block_size=max(seq, Config.from_name(model_name).block_size))
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = GPT(config)
    if precision == "bf16-true":
        model = model.to(torch.bfloat16)
    model.max_seq_length = seq
    # the embedding is a lookup, not a matmul, so its parameters do no FLOPs
    n_params = sum(p.numel() for p in model.parameters()) - model.transformer.wte.weight.numel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    forward = torch.compile(model) if compile else model
    x = torch.randint(0, config.vocab_size, (micro_batch, seq + 1), device="cuda")
    autocast = precision == "bf16-mixed"

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = forward(x[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    torch.cuda.reset_peak_memory_stats()
    ms = statistics.median(cuda_time_ms(step, iters=iters, warmup=3 if not compile else 5))
    tokens_per_s = micro_batch * seq / (ms / 1e3)
    achieved = tokens_per_s * flops_per_token(config, n_params, seq) / 1e12
    return dict(
        bench="train_throughput", model=model_name, seq=seq, micro_batch=micro_batch, precision=precision,
        compile=compile, step_ms=round(ms, 1), tokens_per_s=round(tokens_per_s), mfu_989=round(achieved / 989, 3),
        mfu_measured=round(achieved / peak, 3), peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama-1.1b")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--micro_batch", type=int, nargs="+", default=[16])
    parser.add_argument("--precision", nargs="+", default=["bf16-mixed", "bf16-true"], choices=["bf16-mixed", "bf16-true"])
    parser.add_argument("--compile", choices=["no", "yes", "both"], default="both")
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    peak = matmul_peak_tflops()
    emit(dict(bench="matmul_peak", tflops=round(peak, 1)))
    cases = []
    for precision in args.precision:
        for compile in {"no": [False], "yes": [True], "both": [False, True]}[args.compile]:
            for mb in args.micro_batch:
                try:
                    case = run(args.model, args.seq, mb, precision, compile, args.iters, peak)
                except torch.OutOfMemoryError:
                    case = dict(bench="train_throughput", model=args.model, micro_batch=mb, precision=precision, compile=compile, error="OOM")
                torch.cuda.empty_cache()
                emit(case)
                cases.append(case)
    table(cases, ["model", "precision", "compile", "micro_batch", "tokens_per_s", "mfu_989", "mfu_measured", "peak_gib"])


if __name__ == "__main__":
    main()
