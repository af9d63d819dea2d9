"""Where decode/prefill time goes, and variants worth trying (a development probe, not a figure of RESULTS.md)."""
import statistics, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent)); sys.path.insert(0, str(Path(__file__).parent.parent))
from common import cuda_time_ms
from decode_throughput import build
from litgpt.generate.core import GraphedStep, prefill, generate_tokens, decode_step

def top(prof, n=12):
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=n, max_name_column_width=60), flush=True)

def probe(name):
    model = build(name, 384)
    prompt = torch.randint(0, 1000, (128,), device="cuda")
    with torch.inference_mode():
        f = lambda: prefill(model, [prompt])
        ms = statistics.median(cuda_time_ms(f, 5, 2))
        torch.cuda.synchronize(); t = time.perf_counter(); f(); cpu = (time.perf_counter() - t) * 1e3; torch.cuda.synchronize(); wall = (time.perf_counter() - t) * 1e3
        print(f"{name} prefill gpu {ms:.2f} ms, cpu enqueue {cpu:.2f} ms, wall {wall:.2f} ms", flush=True)
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CUDA]) as p:
            f(); torch.cuda.synchronize()
        top(p, 10)
        for label, step in [("compiled", GraphedStep(compile=True))]:
            tok = torch.tensor([[5]], device="cuda"); pos = torch.tensor([[128]], device="cuda")
            step(model, tok, pos, 129)
            ms = statistics.median(cuda_time_ms(lambda: step(model, tok, pos, 129), 20, 3))
            with profile(activities=[ProfilerActivity.CUDA]) as p:
                for _ in range(5): step(model, tok, pos, 129)
                torch.cuda.synchronize()
            print(f"{name} {label} step {ms:.3f} ms", flush=True)
            top(p, 8)
    del model; torch.cuda.empty_cache()

if __name__ == "__main__":
    for name in sys.argv[1:]:
        probe(name)
