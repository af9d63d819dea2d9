"""Batch-1 greedy decoding through litgpt's generation loop: tokens/s, time to first token, bandwidth bound.

    python benchmarks/decode_throughput.py --model Llama-3.2-1B Llama-3.1-8B --step eager graphs compiled

Steps: `eager` is the plain step (`decode_step`, a kernel launch per op from Python); `graphs` replays a CUDA
graph of the same eager step (`GraphedStep()`, what `litgpt generate` uses on a GPU); `compiled` compiles
the model's blocks with torch.compile, their products and attention through litgpt's Triton kernels
(`litgpt.engine.decode_kernels`), and then graphs the step, and graphs the prefill too (`GraphedStep(compile=True)`, `litgpt generate --compile`). Each case also checks itself against
`eager`: the greedy tokens must agree, and the logits of the first decode step must match to bf16 tolerance.
`whole` compiles the whole model instead of one block for all (`GraphedStep(compile=True, regional=False)`).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import List, Tuple

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import copy_bandwidth_tbs, emit, equal_prefix, table  # noqa: E402

from litgpt.config import Config  # noqa: E402
from litgpt.engine.core import GraphedStep, decode_step, prefill  # noqa: E402
from litgpt.engine.batcher import generate_tokens  # noqa: E402
from litgpt.model import GPT  # noqa: E402


def build(model_name: str, length: int, dtype: torch.dtype = torch.bfloat16) -> GPT:
    config = Config.from_name(model_name)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda"):
            model = GPT(config).eval()
    finally:
        torch.set_default_dtype(default)
    model.max_seq_length = length
    model.set_kv_cache(batch_size=1)
    return model


def make_step(kind: str):
    return {"eager": lambda: decode_step, "graphs": lambda: GraphedStep(), "compiled": lambda: GraphedStep(compile=True),
            "whole": lambda: GraphedStep(compile=True, regional=False)}[kind]()


@torch.inference_mode()
def first_step_logits(model: GPT, prompt: torch.Tensor, step) -> torch.Tensor:
    logits = prefill(model, [prompt])
    token = logits.argmax(-1).view(1, 1)
    return step(model, token, torch.tensor([[prompt.numel()]], device="cuda"), prompt.numel() + 1).float()


def generation_rates(model: GPT, step, prompt: torch.Tensor, new: int, repeats: int) -> Tuple[List[float], List[float], List[int]]:
    """tokens/s after the first token, and the seconds to the first token, of `repeats` generations (after one
    that warms up: graph capture, compilation), and the tokens of the last."""
    rates, firsts, tokens = [], [], []
    for i in range(repeats + 1):
        torch.cuda.synchronize()
        start = time.perf_counter()
        first = None
        tokens = []
        for token in generate_tokens(model, prompt, new, temperature=0.0, step=step):
            if first is None:
                first = time.perf_counter() - start
            tokens.append(token)
        torch.cuda.synchronize()
        total = time.perf_counter() - start
        if i:  # the first run warms up (graph capture, compilation)
            rates.append((len(tokens) - 1) / (total - first))
            firsts.append(first)
    return rates, firsts, tokens


def run(model: GPT, model_name: str, kind: str, prompt: torch.Tensor, new: int, repeats: int, bandwidth: float, reference: dict,
        compiles: int = 1) -> dict:
    # parameter bytes read per token: all weights except the embedding table, of which one row is read
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters()) - model.transformer.wte.weight.nbytes
    if model.lm_head.weight is model.transformer.wte.weight:
        weight_bytes += model.lm_head.weight.nbytes
    compiled = kind in ("compiled", "whole")
    per_compile, firsts = [], []
    for i in range(compiles if compiled else 1):
        if i:
            torch._dynamo.reset()  # compile (and autotune) afresh
        step = make_step(kind)
        rates, first_times, tokens = generation_rates(model, step, prompt, new, repeats)
        per_compile.append(statistics.median(rates))
        firsts += first_times
    logits = first_step_logits(model, prompt, step)
    if kind == "eager":
        reference.update(tokens=tokens, logits=logits)
    agree = equal_prefix(tokens, reference["tokens"])
    bound = bandwidth * 1e12 / weight_bytes  # tokens/s if each step only had to read the weights once
    rate = statistics.median(per_compile)
    spread = dict(tokens_per_s_per_compile=[round(r, 1) for r in per_compile]) if len(per_compile) > 1 else {}
    return dict(
        bench="decode_throughput", model=model_name, dtype=str(model.lm_head.weight.dtype).replace("torch.", ""), step=kind, prompt=prompt.numel(), new=new, tokens_per_s=round(rate, 1),
        ttft_ms=round(statistics.median(firsts) * 1e3, 2), bandwidth_bound=round(bound), fraction=round(rate / bound, 3),
        greedy_tokens_equal_to_eager=f"{agree}/{len(tokens)}",
        first_step_logits_max_diff=round(float((logits - reference["logits"]).abs().max()), 4), **spread,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["Llama-3.2-1B", "Llama-3.1-8B"])
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16",
                        help="float32 makes the greedy comparison exact enough to catch a wrong fast path: random-weight logits are near-ties")
    parser.add_argument("--compiles", type=int, default=1,
                        help="compile and capture the `compiled`/`whole` step this many times afresh and report the median: one "
                             "compilation's speed is a draw (inductor's autotuning, the graph's placement), 925-992 tokens/s for Llama-3.2-1B on an H200")
    parser.add_argument("--step", nargs="+", default=["eager", "graphs", "compiled"], choices=["eager", "graphs", "compiled", "whole"])
    args = parser.parse_args()
    bandwidth = copy_bandwidth_tbs()  # bytes read + written, the figure the reference bound uses
    emit(dict(bench="copy_bandwidth", tbs=round(bandwidth, 2)))
    cases = []
    for name in args.model:
        model = build(name, args.prompt + args.new, getattr(torch, args.dtype))
        prompt = torch.randint(0, model.config.vocab_size, (args.prompt,), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
        reference: dict = {}
        for kind in ["eager"] + [k for k in args.step if k != "eager"]:
            case = run(model, name, kind, prompt, args.new, args.repeats, bandwidth, reference, args.compiles)
            if kind in args.step:
                emit(case)
                cases.append(case)
        del model
        torch.cuda.empty_cache()
    table(cases, ["model", "dtype", "step", "tokens_per_s", "ttft_ms", "bandwidth_bound", "fraction", "greedy_tokens_equal_to_eager", "first_step_logits_max_diff"])


if __name__ == "__main__":
    main()
