"""The server's engine without HTTP: `Batcher` (the continuous-batching loop) kept full with N sequences.

    python benchmarks/batcher_profile.py --model Llama-3.2-1B --clients 64 --seconds 10             # tok/s
    python benchmarks/batcher_profile.py --model Llama-3.2-1B --clients 64 --seconds 10 --phases    # + where time goes

Random weights of the registry config in the serving precision, the KV cache planned as `litgpt serve` plans it
(rows and context from the free memory), `--prompt_tokens` random prompts, `--new_tokens` each, "sampled" with the
server's defaults (temperature 0.8, top_k 50) and "greedy" (temperature 0). When a sequence finishes another joins,
so `--clients` stay in flight. `--phases` synchronises the device around each part of a step (slower, but it says
where the time goes: prefill, decode forward, sampling and the host's bookkeeping); `--cprofile` prints the
host's busiest functions.
"""

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent))
from litgpt.config import Config  # noqa: E402
from litgpt.engine.batcher import Batcher, Generation  # noqa: E402
from litgpt.engine.core import ensure_kv_cache, fast_decode_step  # noqa: E402
from litgpt.model import GPT  # noqa: E402


def run(batcher: Batcher, model: GPT, args: argparse.Namespace, temperature: float, seconds: float) -> dict:
    device = model.lm_head.weight.device
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    done = [0, 0]  # sequences, tokens

    def new() -> Generation:
        prompt = torch.randint(0, vocab, (args.prompt_tokens,), generator=g).to(device)
        gen = Generation(prompt, args.new_tokens, temperature=temperature, top_k=50)

        def on_update(s: Generation, released: list) -> None:
            if s.done:
                done[0] += 1
                done[1] += len(s.tokens)
                batcher.add(new())

        gen.on_update = on_update
        return gen

    for _ in range(args.clients):
        batcher.add(new())
    start = time.perf_counter()
    steps = 0
    while time.perf_counter() - start < seconds:
        batcher.step()
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return dict(tokens_per_s=round(done[1] / elapsed), steps_per_s=round(steps / elapsed, 1), finished=done[0])


class Phases:
    """Times Batcher's parts with the device synchronised around each."""

    def __init__(self, batcher: Batcher) -> None:
        self.totals: dict = {}
        for name in ("_admit", "_decode", "_read"):
            setattr(batcher, name, self.timed(name, getattr(batcher, name)))
        import litgpt.engine.batcher as module

        self.sample = module._sample
        module._sample = self.timed("sample", module._sample)
        self.step = batcher.decode_step
        batcher.decode_step = self.timed("forward", batcher.decode_step)

    def timed(self, name, fn):
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

        def wrapper(*a, **k):
            sync()
            t = time.perf_counter()
            out = fn(*a, **k)
            sync()
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - t
            return out

        return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Llama-3.2-1B")
    parser.add_argument("--clients", type=int, nargs="+", default=[64])
    parser.add_argument("--prompt_tokens", type=int, default=128)
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max_batch_size", type=int, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--phases", action="store_true")
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()

    from litgpt.serve import plan_rows

    torch.manual_seed(0)
    with torch.device(args.device):
        model = GPT(Config.from_name(args.model))
    model = model.to(torch.bfloat16 if args.device == "cuda" else torch.float32)
    model.eval()
    rows, context = plan_rows(model, args.max_batch_size)
    model.max_seq_length = context
    ensure_kv_cache(model, rows, context)
    print(f"{args.model}: {rows} rows x {context} tokens", flush=True)
    batcher = Batcher(model, rows, step=fast_decode_step(args.compile))
    for clients in args.clients:
        for mode, temperature in (("greedy", 0.0), ("sampled", 0.8)):
            args_c = argparse.Namespace(**{**vars(args), "clients": clients})
            run(batcher, model, args_c, temperature, 2.0)  # warm-up: graphs for the batch sizes met
            while batcher.busy:
                for gen in batcher.running + list(batcher.waiting):
                    gen.on_update = None
                batcher.run()
            profiler = cProfile.Profile() if args.cprofile else None
            profiler and profiler.enable()
            result = run(batcher, model, args_c, temperature, args.seconds)
            profiler and profiler.disable()
            print(f"clients {clients} {mode}: {result}", flush=True)
            if profiler:
                pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
            for gen in batcher.running + list(batcher.waiting):
                gen.on_update = None
            batcher.run()
            if args.phases:
                phases = Phases(batcher)
                run(batcher, model, args_c, temperature, args.seconds / 2)
                print(f"  phases (s, device synced): { {k: round(v, 3) for k, v in phases.totals.items()} }", flush=True)
                for name in ("_admit", "_decode", "_read"):
                    delattr(batcher, name)
                batcher.decode_step = phases.step
                import litgpt.engine.batcher as module

                module._sample = phases.sample
                for gen in batcher.running + list(batcher.waiting):
                    gen.on_update = None
                batcher.run()


if __name__ == "__main__":
    main()
