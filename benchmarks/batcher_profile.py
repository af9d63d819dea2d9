"""The server's engine without HTTP: `Batcher` (the continuous-batching loop) kept full with N sequences.

    python benchmarks/batcher_profile.py --model Llama-3.2-1B --clients 64 --seconds 10             # tok/s
    python benchmarks/batcher_profile.py --model Llama-3.2-1B --clients 64 --seconds 10 --phases    # + where time goes

Random weights of the registry config in the serving precision, the KV cache planned as `litgpt serve` plans it
(rows and context from the free memory), `--prompt_tokens` random prompts, `--new_tokens` each, "sampled" with the
server's defaults (temperature 0.8, top_k 50) and "greedy" (temperature 0). When a sequence finishes another joins,
so `--clients` stay in flight. `--phases` synchronises the device around each part of a step (slower, but it says
where the time goes: prefill, decode forward, sampling and the host's bookkeeping); `--cprofile` prints the
host's busiest functions.

A shared system prompt, and what copying its keys and values saves (`Batcher(reuse_prefixes=...)`), both in one run:

    python benchmarks/batcher_profile.py --model Llama-3.2-1B --clients 64 --shared_prefix 1024 --reuse true false

Each prompt is then `--shared_prefix` fixed tokens followed by `--prompt_tokens` random ones; the figures add the
prompt tokens prefilled and copied per second, and the mean time to first token (from `add` to the step that
reads it back).

Long prompts among short ones, prefilled a chunk a step or whole (`Batcher(prefill_chunk=...)`; 0 = whole): the
running rows' inter-token gaps (p99 and max) say how long a long prefill holds them up.

    python benchmarks/batcher_profile.py --clients 64 --long_prompt_tokens 8192 --long_every 16 --prefill_chunk 2048 0
"""

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import emit  # noqa: E402
from serve_throughput import tiny_config  # noqa: E402

from litgpt.config import Config  # noqa: E402
from litgpt.engine.batcher import PREFILL_CHUNK, Batcher, Generation  # noqa: E402
from litgpt.engine.core import ensure_kv_cache, fast_decode_step  # noqa: E402
from litgpt.model import GPT  # noqa: E402


def run(batcher: Batcher, model: GPT, args: argparse.Namespace, temperature: float, seconds: float) -> dict:
    device = model.lm_head.weight.device
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    shared = torch.randint(0, vocab, (args.shared_prefix,), generator=g)
    done = [0, 0]  # sequences, tokens
    ttft = [0.0, 0]  # seconds, sequences
    gaps: list = []  # seconds between a sequence's releases
    made = [0]
    refill = [True]  # a finished sequence is replaced until the run ends; then the batcher drains with `run()`

    def new() -> Generation:
        made[0] += 1
        long = args.long_every and made[0] % args.long_every == 0
        own = torch.randint(0, vocab, (args.long_prompt_tokens if long else args.prompt_tokens,), generator=g)
        gen = Generation(torch.cat((shared, own)).to(device), args.new_tokens, temperature=temperature, top_k=50)
        last = [time.perf_counter()]

        def on_update(s: Generation, released: list) -> None:
            now = time.perf_counter()
            if released and len(s.tokens) == len(released):
                ttft[0] += now - last[0]
                ttft[1] += 1
            elif released:
                gaps.append(now - last[0])
            last[0] = now
            if s.done and refill[0]:
                done[0] += 1
                done[1] += len(s.tokens)
                batcher.add(new())

        gen.on_update = on_update
        return gen

    for _ in range(args.clients):
        batcher.add(new())
    counted = (batcher.prefilled_tokens, batcher.reused_tokens)
    start = time.perf_counter()
    steps = 0
    while time.perf_counter() - start < seconds:
        batcher.step()
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    refill[0] = False
    return dict(tokens_per_s=round(done[1] / elapsed), steps_per_s=round(steps / elapsed, 1), finished=done[0],
                ttft_ms=round(1000 * ttft[0] / max(1, ttft[1]), 1),
                itl_p99_ms=round(1000 * sorted(gaps)[int(0.99 * (len(gaps) - 1))], 2) if gaps else None,
                itl_max_ms=round(1000 * max(gaps), 2) if gaps else None,
                prefilled_per_s=round((batcher.prefilled_tokens - counted[0]) / elapsed),
                reused_per_s=round((batcher.reused_tokens - counted[1]) / elapsed))


class Phases:
    """Times Batcher's parts with the device synchronised around each."""

    def __init__(self, batcher: Batcher) -> None:
        self.totals: dict = {}
        for name in ("_admit", "_decode", "_read"):
            setattr(batcher, name, self.timed(name, getattr(batcher, name)))
        import litgpt.engine.batcher as module

        self.sample = module.choose  # sampling after the step (inside it when the step is a GraphedStep)
        module.choose = self.timed("sample", module.choose)
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


def case(batcher: Batcher, model: GPT, args_c: argparse.Namespace, temperature: float, label: dict) -> None:
    """Warm up, then measure (and with --phases / --cprofile, take apart) one case; prints it as a JSON line."""
    run(batcher, model, args_c, temperature, 2.0)  # warm-up: graphs for the batch sizes met
    batcher.run()
    profiler = cProfile.Profile() if args_c.cprofile else None
    profiler and profiler.enable()
    result = run(batcher, model, args_c, temperature, args_c.seconds)
    profiler and profiler.disable()
    emit({**label, **result})
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    batcher.run()
    if args_c.phases:
        phases = Phases(batcher)
        run(batcher, model, args_c, temperature, args_c.seconds / 2)
        print(f"  phases (s, device synced): { {k: round(v, 3) for k, v in phases.totals.items()} }", flush=True)
        for name in ("_admit", "_decode", "_read"):
            delattr(batcher, name)
        batcher.decode_step = phases.step
        import litgpt.engine.batcher as module

        module.choose = phases.sample
        batcher.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Llama-3.2-1B")
    parser.add_argument("--tiny", action="store_true",
                        help="a 2-layer, width-64 model instead: on the CPU its steps cost little but the host's work")
    parser.add_argument("--clients", type=int, nargs="+", default=[64])
    parser.add_argument("--prompt_tokens", type=int, default=128)
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max_batch_size", type=int, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--phases", action="store_true")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--shared_prefix", type=int, default=0, help="fixed tokens that every prompt begins with")
    parser.add_argument("--reuse", nargs="+", choices=["true", "false"], default=["true"],
                        help="copy shared prompt prefixes from running rows (Batcher's reuse_prefixes), or not; both: one case each")
    parser.add_argument("--modes", nargs="+", choices=["greedy", "sampled"], default=["greedy", "sampled"])
    parser.add_argument("--long_prompt_tokens", type=int, default=0, help="the random tokens of a long prompt")
    parser.add_argument("--long_every", type=int, default=0, help="every this many new prompts is a long one (0: none)")
    parser.add_argument("--prefill_chunk", type=int, nargs="+", default=[PREFILL_CHUNK],
                        help="Batcher's prefill_chunk (0: whole prompts); several: one case each")
    args = parser.parse_args()

    from litgpt.serve import plan_rows

    torch.manual_seed(0)
    with torch.device(args.device):
        model = GPT(tiny_config() if args.tiny else Config.from_name(args.model))
    model = model.to(torch.bfloat16 if args.device == "cuda" else torch.float32)
    model.eval()
    rows, context = plan_rows(model, args.max_batch_size)
    model.max_seq_length = context
    ensure_kv_cache(model, rows, context)
    print(f"{model.config.name}: {rows} rows x {context} tokens", flush=True)
    batcher = Batcher(model, rows, step=fast_decode_step(args.compile))
    modes = [(mode, 0.0 if mode == "greedy" else 0.8) for mode in args.modes]
    cases = [(c, r, k, m) for c in args.clients for r in args.reuse for k in args.prefill_chunk for m in modes]
    for clients, reuse, chunk, (mode, temperature) in cases:
        batcher.reuse_prefixes, batcher.prefill_chunk = reuse == "true", chunk
        label = dict(bench="batcher_profile", model=model.config.name, clients=clients, mode=mode, shared_prefix=args.shared_prefix,
                     prompt_tokens=args.prompt_tokens, new_tokens=args.new_tokens, reuse=reuse == "true",
                     long_prompt_tokens=args.long_prompt_tokens, long_every=args.long_every, prefill_chunk=chunk)
        case(batcher, model, argparse.Namespace(**{**vars(args), "clients": clients}), temperature, label)


if __name__ == "__main__":
    main()
