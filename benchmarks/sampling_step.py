"""What choosing the next tokens costs a decode step: each way of sampling timed alone on logits of a real
vocabulary, eagerly and replayed from a CUDA graph, per row count.

    python benchmarks/sampling_step.py                       # 1, 64 and 256 rows of Llama-3's 128,256 logits in bf16
    python benchmarks/sampling_step.py --rows 64 --top_k 50 --top_p 0.9
    python benchmarks/sampling_step.py --device cpu --rows 4 --vocab 512 --iters 5    # a CPU smoke run

Cases, all over the same random logits (B, V) with the server's default settings (temperature 0.8, top_k 50):
- argmax: what a greedy batch does;
- sample_with: what the batcher runs (top-k in the logits' dtype, then temperature, top-p, one uniform draw a row);
- topk: its top-k alone (`logits.topk(width)`);
- two-stage topk: the top-k of the vocabulary cut into chunks, then of the chunks' winners (the same set of
  values; a candidate for a faster top-k when few rows hold a long vocabulary);
- the sampling tail: sample_with's work after the top-k (`draw`: mask, softmax, cumulative sums, the draw).
"eager µs" is wall time per call with the host launching each kernel (torch.cuda.synchronize after the loop,
divided by the calls); "graph µs" replays a CUDA graph of the same call, which is how `GraphedStep` runs it since
sampling moved into the step's graph. The host's share of a step is about the difference.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import emit, table  # noqa: E402

from litgpt.engine.sampling import RowSettings, draw, sample_with  # noqa: E402


def two_stage_topk(logits: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    B, V = logits.shape
    pad = (-V) % chunk
    padded = torch.nn.functional.pad(logits, (0, pad), value=float("-inf")) if pad else logits
    values, _ = padded.view(B, -1, chunk).topk(min(k, chunk), dim=-1)
    return values.flatten(1).topk(k, dim=-1).values


def timed(fn: Callable[[], torch.Tensor], device: str, iters: int, graph: bool) -> float:
    """Mean µs per call of `fn` (eager launches, or replays of its CUDA graph)."""
    if graph:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
            fn()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        run = g.replay
    else:
        run = fn
    for _ in range(3):
        run()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        run()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters * 1e6


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--top_k", type=int, default=50)
    parser.add_argument("--top_p", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args(argv)
    device, dtype = args.device, getattr(torch, args.dtype)
    graphs = [False, True] if device == "cuda" else [False]
    cases: List[Dict] = []
    torch.manual_seed(0)
    for B in args.rows:
        logits = torch.randn(B, args.vocab, device=device).to(dtype) * 3
        rs = RowSettings([args.temperature] * B, [args.top_k] * B, [args.top_p] * B, args.vocab)
        settings, width = rs.tensor(torch.device(device)), rs.width
        uniform = torch.rand(B, device=device)
        values, indices = logits.topk(width, dim=-1)

        ways: Dict[str, Callable[[], torch.Tensor]] = {
            "argmax": lambda: logits.argmax(dim=-1),
            "sample_with": lambda: sample_with(logits, settings, width, uniform),
            "topk": lambda: logits.topk(width, dim=-1).values,
            "two-stage topk": lambda: two_stage_topk(logits, width),
            "sampling tail": lambda: draw(values, indices, settings, uniform),
        }
        assert torch.equal(two_stage_topk(logits, width), logits.topk(width, dim=-1).values)
        for name, fn in ways.items():
            case = {"bench": "sampling_step", "rows": B, "vocab": args.vocab, "dtype": args.dtype, "width": width, "way": name}
            for graph in graphs:
                case["graph_us" if graph else "eager_us"] = round(timed(fn, device, args.iters, graph), 1)
            emit(case)
            cases.append(case)
    table(cases, ["rows", "way", "width", "eager_us", "graph_us"])


if __name__ == "__main__":
    main()
