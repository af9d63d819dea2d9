"""How fast a pretraining step could be on this GPU: its matmuls, attention and optimizer as they run in the
step, plus the least memory traffic the rest of the step needs.

    python benchmarks/train_floor.py                      # tiny-llama-1.1b, 16 x 2048, bf16-mixed, compiled
    python benchmarks/train_floor.py --precision bf16-true --target 94000
    python benchmarks/train_floor.py --variant plain fused fp8 fp8+fused --fp8 rowwise   # side by side

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

`--variant` builds the model as `litgpt pretrain` does for an option, with the loop's own functions, and profiles
each the same way: `plain` (the default command: compiled, no liger), `fused` (liger-kernel's RMSNorm, SwiGLU and
RoPE asked for through `use_fused_kernels`: a compiled model now gets none, as liger under torch.compile gave wrong gradients,
so this equals `plain`), `fp8` (`--fp8 RECIPE`:
`to_float8`), `fp8+fused`. The fused kernels move no fewer bytes than the floor counts already, so their traffic
is the plain one. Under fp8 the matmul time is the profiled float8 GEMMs (and the head's bf16 one), and the casts
to float8 are a row of their own: torchao casts, per float8 layer and step, the input and the weight for the
output, the output's gradient and the weight for the input's gradient, the output's gradient and the input for
the weight's gradient (it keeps the high-precision tensors and casts again). Each cast reads its source and writes
a byte per element and its scales (4 bytes: one per tensor, or one per row with `rowwise`); it reads the source
twice where its scale spans more than a row in memory (a whole tensor, or a column: the amax is a pass of its
own). The float8 layers' weights skip autocast's cast to bf16; their gradients still come back in bf16.
A variant that cannot run here (no CUDA GPU, fp8 without a GPU of compute capability 8.9 or torchao, fused
without liger-kernel) is named with the reason on one line and left out.
"""

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import copy_bandwidth_tbs, emit, matmul_peak_tflops, table  # noqa: E402
from train_throughput import run  # noqa: E402

from litgpt.config import Config  # noqa: E402
from litgpt.model import GPT  # noqa: E402
from litgpt.train.loop import FP8_RECIPES, check_fp8  # noqa: E402

VARIANTS = {"plain": (False, False), "fused": (False, True), "fp8": (True, False), "fp8+fused": (True, True)}  # (float8, liger)


def float8_casts(layers: Sequence[Tuple[int, int]], tokens: int, recipe: str, weight_bytes: int) -> int:
    """Least bytes of torchao's casts to float8 in one step, for linear layers of these (in, out) features."""
    rowwise = recipe == "rowwise"
    total = 0
    for k, n in layers:
        casts = (  # (elements, bytes of each, scales when row-wise, whether those run along the source's rows)
            (tokens * k, 2, tokens, True), (k * n, weight_bytes, n, True),  # output: the input, the weight
            (tokens * n, 2, tokens, True), (k * n, weight_bytes, k, False),  # input's gradient: the output's gradient, the weight
            (tokens * n, 2, n, False), (tokens * k, 2, k, False),  # weight's gradient: the output's gradient, the input
        )
        for elements, size, rows, along_rows in casts:
            reads = 1 if rowwise and along_rows else 2  # an amax across rows (or the whole tensor) is a pass of its own
            total += elements * (size * reads + 1) + 4 * (rows if rowwise else 1)
    return total


def traffic(config: Config, tokens: int, n_cast: int, precision: str, float8: Sequence[Tuple[int, int]] = (),
            recipe: str = "rowwise") -> dict:
    """Least bytes moved outside the matmuls and attention in one step, by kind (see the module's docstring);
    `float8`: the (in, out) features of the layers that train in float8 with `recipe`."""
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
        # a float8 layer casts its fp32 weight to float8 itself (next row); its gradient still comes back in bf16
        parts["autocast casts (weights to bf16, gradients to fp32)"] = 2 * (4 + 2) * n_cast - (4 + 2) * sum(k * n for k, n in float8)
    if float8:
        parts["float8 casts (inputs, weights, output gradients and their scales)"] = float8_casts(
            float8, tokens, recipe, 4 if precision == "bf16-mixed" else 2)
    return parts


def float8_layers(config: Config, recipe: str) -> List[Tuple[int, int]]:
    """(in, out) features of each linear layer that `to_float8` converts: it converts a model on the meta device."""
    from torchao.float8.float8_linear import Float8Linear

    from litgpt.train.loop import to_float8

    with torch.device("meta"):
        model = GPT(config)
    to_float8(model, recipe)
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, Float8Linear)]


def skip_reason(variant: str, recipe: str, precision: str) -> Optional[str]:
    """Why `variant` cannot be measured here, or None."""
    float8, liger = VARIANTS[variant]
    if not torch.cuda.is_available():
        return "the step is profiled on a CUDA GPU and none is available here"
    try:
        check_fp8(recipe if float8 else "none", precision)
    except ValueError as e:
        return str(e)
    if liger and importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (pip install liger-kernel)"
    return None


def floor(config: Config, tokens: int, n_cast: int, float8: List[Tuple[int, int]], args: argparse.Namespace,
          bandwidth: float, step: dict, label: dict) -> Tuple[List[dict], dict]:
    """The parts of the floor (measured in `step`'s profile, or traffic over `bandwidth`) and the floor itself."""
    measured = step["profile_ms"]
    in_step = {kind: measured.get(kind, 0.0) for kind in ("matmul", "attention", "optimizer")}
    moved = traffic(config, tokens, n_cast, args.precision, float8, args.fp8)
    needs = sum(moved.values()) / (bandwidth * 1e12) * 1e3
    rows = [dict(part=f"{kind} (in the step)", ms=ms) for kind, ms in in_step.items()]
    rows += [dict(part=f"traffic floor: {kind}", ms=round(n / (bandwidth * 1e12) * 1e3, 1), gb=round(n / 1e9, 1)) for kind, n in moved.items()]
    elementwise = measured.get("triton (fused by inductor)", 0.0)
    rows.append(dict(part="for comparison: inductor's kernels in the step", ms=elementwise))
    if "liger (fused kernels)" in measured:
        rows.append(dict(part="for comparison: liger's kernels in the step", ms=measured["liger (fused kernels)"]))
    total = sum(in_step.values()) + needs
    target_ms = tokens / args.target * 1e3
    result = dict(
        bench="train_floor", model=args.model, **label, micro_batch=args.micro_batch, seq=args.seq, precision=args.precision,
        copy_tbs=round(bandwidth, 2), step_ms=step["step_ms"], floor_ms=round(total, 1), tokens_per_s=round(tokens / (total / 1e3)),
        target=args.target, target_ms=round(target_ms, 1),
        # what the target leaves for the traffic once the measured parts have run, against what the traffic needs
        target_leaves_for_traffic_ms=round(target_ms - sum(in_step.values()), 1), traffic_needs_ms=round(needs, 1),
    )
    return rows, result


def report(cases: List[Tuple[str, dict, List[dict], dict]], tokens: int) -> None:
    """One variant: its parts and its floor. Several: the parts with a column of ms per variant, then a row per variant."""
    if len(cases) == 1:
        _, _, rows, result = cases[0]
        table(rows, ["part", "ms", "gb"])
        table([result], ["step_ms", "floor_ms", "tokens_per_s", "target_ms", "target_leaves_for_traffic_ms", "traffic_needs_ms"])
        return
    parts: Dict[str, dict] = {}
    for variant, _, rows, _ in cases:
        for r in rows:
            parts.setdefault(r["part"], dict(part=r["part"]))[variant] = r["ms"]
    ordered = sorted(parts.values(), key=lambda r: r["part"].startswith("for comparison"))  # a row only fp8 has: with the traffic
    table(ordered, ["part"] + [variant for variant, *_ in cases])
    summary = [dict(variant=variant, fused=step.get("fused", "none"), step_ms=step["step_ms"],
                    measured_tokens_per_s=round(tokens / (step["step_ms"] / 1e3)), floor_ms=result["floor_ms"],
                    ceiling_tokens_per_s=result["tokens_per_s"], traffic_needs_ms=result["traffic_needs_ms"],
                    target_leaves_for_traffic_ms=result["target_leaves_for_traffic_ms"])
               for variant, step, _, result in cases]
    table(summary, ["variant", "fused", "step_ms", "measured_tokens_per_s", "floor_ms", "ceiling_tokens_per_s", "traffic_needs_ms",
                    "target_leaves_for_traffic_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama-1.1b")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--micro_batch", type=int, default=16)
    parser.add_argument("--precision", choices=["bf16-mixed", "bf16-true"], default="bf16-mixed")
    parser.add_argument("--target", type=float, default=94_000, help="tokens/s to compare the ceiling with")
    parser.add_argument("--variant", nargs="+", choices=list(VARIANTS), default=["plain"],
                        help="how the model is built, as `litgpt pretrain` builds it: plain, with --fp8, and each asking for liger's "
                        "fused kernels (+fused), which a compiled model never gets, so those equal plain and fp8")
    parser.add_argument("--fp8", choices=list(FP8_RECIPES), default="rowwise", help="the float8 recipe of the fp8 variants")
    args = parser.parse_args()
    args.variant = list(dict.fromkeys(args.variant))
    config = Config.from_name(args.model)
    if config.mlp_class_name != "LLaMAMLP" or config.norm_class_name != "RMSNorm":
        parser.error(f"{args.model}: the traffic count is written for LLaMA-style blocks (RMSNorm, gated MLP)")
    runnable = []
    for variant in args.variant:
        reason = skip_reason(variant, args.fp8, args.precision)
        if reason:
            print(f"{variant}: skipped, {reason}", flush=True)
        else:
            runnable.append(variant)
    if not runnable:
        raise SystemExit("train_floor: no variant could be measured here")
    tokens = args.micro_batch * args.seq
    with torch.device("meta"):
        model = GPT(config)
    n_cast = sum(p.numel() for p in model.parameters()) - model.transformer.wte.weight.numel()  # a lookup is not cast

    # measured first: right after the step's profile it read 3.77 TB/s on an H200, against 4.13-4.15 on its own
    bandwidth = copy_bandwidth_tbs()
    peak = matmul_peak_tflops()
    cases = []
    for variant in runnable:
        float8, liger = VARIANTS[variant]
        torch.cuda.empty_cache()
        step = run(args.model, args.seq, args.micro_batch, args.precision, True, 6, peak, profile=2, fused=liger,
                   fp8=args.fp8 if float8 else "none")
        emit(step)
        label = {} if args.variant == ["plain"] else dict(variant=variant, **({"fp8": args.fp8} if float8 else {}))
        rows, result = floor(config, tokens, n_cast, float8_layers(config, args.fp8) if float8 else [], args, bandwidth, step, label)
        for r in rows:
            emit(dict(bench="train_floor_part", model=args.model, **label, **r))
        emit(result)
        cases.append((variant, step, rows, result))
    report(cases, tokens)


if __name__ == "__main__":
    main()
