"""Batch-1 greedy decoding through litgpt's generation loop: tokens/s, time to first token, bandwidth bound.

    python benchmarks/decode_throughput.py --model Llama-3.2-1B --prompt 128 --new 256
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import copy_bandwidth_tbs, emit, table  # noqa: E402

from litgpt.config import Config  # noqa: E402
from litgpt.generate.core import compiled_decode_step, decode_step, generate_tokens  # noqa: E402
from litgpt.model import GPT  # noqa: E402


def run(model_name: str, prompt_len: int, new: int, repeats: int, bandwidth: float, compile: bool) -> dict:
    config = Config.from_name(model_name)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = GPT(config).to(torch.bfloat16).eval()
    model.max_seq_length = prompt_len + new
    model.set_kv_cache(batch_size=1)
    # compiled: one fixed-shape single-token step over the whole cache (CUDA graphs via mode="reduce-overhead")
    step = compiled_decode_step(mode="reduce-overhead") if compile else decode_step
    prompt = torch.randint(0, config.vocab_size, (prompt_len,), device="cuda")
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    rates, firsts = [], []
    for i in range(repeats + 1):
        torch.cuda.synchronize()
        start = time.perf_counter()
        first = None
        count = 0
        for _ in generate_tokens(model, prompt, new, temperature=0.0, step=step):
            if first is None:
                torch.cuda.synchronize()
                first = time.perf_counter() - start
            count += 1
        torch.cuda.synchronize()
        total = time.perf_counter() - start
        if i:  # the first run warms up
            rates.append((count - 1) / (total - first))
            firsts.append(first)
    bound = bandwidth * 1e12 / weight_bytes  # tokens/s if each step only had to read the weights once
    rate = statistics.median(rates)
    return dict(
        bench="decode_throughput", model=model_name, compile=compile, prompt=prompt_len, new=new, tokens_per_s=round(rate, 1),
        ttft_ms=round(statistics.median(firsts) * 1e3, 1), bandwidth_bound=round(bound), fraction=round(rate / bound, 3),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["Llama-3.2-1B"])
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", choices=["no", "yes", "both"], default="no")
    args = parser.parse_args()
    bandwidth = copy_bandwidth_tbs()  # bytes read + written, the figure the reference bound uses
    emit(dict(bench="copy_bandwidth", tbs=round(bandwidth, 2)))
    cases = []
    for name in args.model:
        for compile in {"no": [False], "yes": [True], "both": [False, True]}[args.compile]:
            case = run(name, args.prompt, args.new, args.repeats, bandwidth, compile)
            emit(case)
            cases.append(case)
    table(cases, ["model", "compile", "tokens_per_s", "ttft_ms", "bandwidth_bound", "fraction"])


if __name__ == "__main__":
    main()
