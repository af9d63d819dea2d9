"""How fast a pretraining step could be on this GPU: its matmuls, attention and optimizer as they run in the
step, plus the least memory traffic the rest of the step needs.

    python benchmarks/train_floor.py                      # tiny-llama-1.1b, 16 x 2048, bf16-mixed, compiled
    python benchmarks/train_floor.py --precision bf16-true --target 94000

It runs the compiled step of `train_throughput.py --harness step` under the profiler and takes the GPU time of
its matmuls (cuBLAS), attention (SDPA's kernels) and fused AdamW as they are. (Each GEMM timed alone on random
numbers came out 14% slower than inside the step, 290 against 254 ms for tiny-llama-1.1b on an H200, so those
are measured in place.) The rest of the step is elementwise work: inductor's fused kernels. Outside the matmuls
that work has to move at least these bytes, written out in `traffic`:
- two RMSNorms a layer, each with its residual add fused in: the forward reads x and the branch and writes the
  sum and the normed copy; the backward reads the normed copy's gradient, x and the residual's gradient and
  writes x's (the residual stream is fp32 under bf16-mixed: the embedding's output is not autocast);
- RoPE reads and writes q and k, forward and backward;
- the gated MLP's activation reads two products and writes one; its backward reads three and writes two;
- the loss reads its logits and writes their gradient;
- under bf16-mixed, each fp32 weight is cast to bf16 and its gradient back.
Those bytes over the measured copy bandwidth are the traffic's floor (a count, not a timing). The step's floor
is the measured parts plus that; with `--target` it also prints how much time the target leaves for the traffic.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import copy_bandwidth_tbs, emit, matmul_peak_tflops, table  # noqa: E402
from train_throughput import run  # noqa: E402

from litgpt.config import Config  # noqa: E402
from litgpt.model import GPT  # noqa: E402


def traffic(config: Config, tokens: int, n_cast: int, precision: str) -> dict:
    """Least bytes moved outside the matmuls and attention in one step, by kind (see the module's docstring)."""
    d, f = config.n_embd, config.intermediate_size
    qk = (config.n_head + config.n_query_groups) * config.head_size
    r = 4 if precision == "bf16-mixed" else 2  # bytes per element of the residual stream
    per_layer = {
        "norms and residual adds": 2 * ((r + 2 + r + 2) + (2 + r + r + r)) * d,
        "rope (q and k)": 2 * 4 * qk,
        "gated MLP activation": (3 + 5) * 2 * f,
    }
    parts = {kind: n * config.n_layer * tokens for kind, n in per_layer.items()}
    parts["loss (logits read, gradient written)"] = 2 * 2 * config.padded_vocab_size * tokens
    if precision == "bf16-mixed":
        parts["autocast casts (weights to bf16, gradients to fp32)"] = 2 * (4 + 2) * n_cast
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama-1.1b")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--micro_batch", type=int, default=16)
    parser.add_argument("--precision", choices=["bf16-mixed", "bf16-true"], default="bf16-mixed")
    parser.add_argument("--target", type=float, default=94_000, help="tokens/s to compare the ceiling with")
    args = parser.parse_args()
    config = Config.from_name(args.model)
    if config.mlp_class_name != "LLaMAMLP" or config.norm_class_name != "RMSNorm":
        parser.error(f"{args.model}: the traffic count is written for LLaMA-style blocks (RMSNorm, gated MLP)")
    tokens = args.micro_batch * args.seq
    with torch.device("meta"):
        model = GPT(config)
    n_cast = sum(p.numel() for p in model.parameters()) - model.transformer.wte.weight.numel()  # a lookup is not cast

    # measured first: right after the step's profile it read 3.77 TB/s on an H200, against 4.13-4.15 on its own
    bandwidth = copy_bandwidth_tbs()
    torch.cuda.empty_cache()
    step = run(args.model, args.seq, args.micro_batch, args.precision, True, 6, matmul_peak_tflops(), profile=2)
    emit(step)
    measured = step["profile_ms"]
    in_step = {kind: measured.get(kind, 0.0) for kind in ("matmul", "attention", "optimizer")}
    moved = traffic(config, tokens, n_cast, args.precision)
    needs = sum(moved.values()) / (bandwidth * 1e12) * 1e3
    rows = [dict(part=f"{kind} (in the step)", ms=ms) for kind, ms in in_step.items()]
    rows += [dict(part=f"traffic floor: {kind}", ms=round(n / (bandwidth * 1e12) * 1e3, 1), gb=round(n / 1e9, 1)) for kind, n in moved.items()]
    rows.append(dict(part="for comparison: inductor's kernels in the step", ms=measured.get("triton (fused by inductor)", 0.0)))
    for r in rows:
        emit(dict(bench="train_floor_part", model=args.model, **r))
    floor = sum(in_step.values()) + needs
    target_ms = tokens / args.target * 1e3
    result = dict(
        bench="train_floor", model=args.model, micro_batch=args.micro_batch, seq=args.seq, precision=args.precision,
        copy_tbs=round(bandwidth, 2), step_ms=step["step_ms"], floor_ms=round(floor, 1), tokens_per_s=round(tokens / (floor / 1e3)),
        target=args.target, target_ms=round(target_ms, 1),
        # what the target leaves for the traffic once the measured parts have run, against what the traffic needs
        target_leaves_for_traffic_ms=round(target_ms - sum(in_step.values()), 1), traffic_needs_ms=round(needs, 1),
    )
    emit(result)
    table(rows, ["part", "ms", "gb"])
    table([result], ["step_ms", "floor_ms", "tokens_per_s", "target_ms", "target_leaves_for_traffic_ms", "traffic_needs_ms"])


if __name__ == "__main__":
    main()
