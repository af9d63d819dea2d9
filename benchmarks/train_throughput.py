"""Pretraining throughput of a registry model on random tokens: tokens/s, MFU and peak memory.

    python benchmarks/train_throughput.py --harness loop              # `litgpt pretrain` with its defaults
    python benchmarks/train_throughput.py --harness step --precision bf16-mixed bf16-true --compile both
    python benchmarks/train_throughput.py --fused both        # each case with and without liger's fused kernels

`loop` runs the real command (`litgpt.train.pretrain.setup`: Fabric, its default precision and compile setting,
gradient clipping, the per-step log line) on random tokens and takes the median step time from its CSV log.
`step` times one bare step (forward with the loss from the hidden states, backward, fused AdamW) with CUDA
events, for comparing precisions and compile settings. `--fused off` runs without the fused RMSNorm, SwiGLU and
RoPE kernels that eager training uses on CUDA (`litgpt/train/fused.py`; LITGPT_FUSED_KERNELS=0 for the loop); a
compiled step never has them, as in the commands.
"""

import argparse
import csv
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import cuda_time_ms, emit, matmul_peak_tflops, profile_kernels, table  # noqa: E402

from litgpt.config import Config  # noqa: E402
from litgpt.model import GPT  # noqa: E402
from litgpt.train import fused as fused_kernels  # noqa: E402


def flops_per_token(config: Config, n_params: int, seq: int) -> float:
    """Training FLOPs per token: 6 N for the matmuls with the weights, plus attention's scores and values."""
    attention = 6 * 2 * config.n_layer * config.n_head * config.head_size * seq / 2  # causal: half the scores
    return 6 * n_params + attention


def run(model_name: str, seq: int, micro_batch: int, precision: str, compile: bool, iters: int, peak: float, sdpa: str = "default",
        profile: int = 0, fused: bool = True, fp8: str = "none") -> dict:
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
    if fp8 != "none":  # as the loop does it (`--fp8`): before fusing and compiling
        from litgpt.train.loop import check_fp8, to_float8

        check_fp8(fp8, precision)
        to_float8(model, fp8)
    # as the loop does it: a compiled model gets no liger kernels (under dynamo they gave wrong gradients)
    kernels = fused_kernels.use_fused_kernels(model, torch.device("cuda"), compiling=compile) if fused else []
    if compile:
        torch._dynamo.reset()  # each case compiles afresh (fused and plain models differ; dynamo caps recompiles)
    forward = torch.compile(model) if compile else model
    x = torch.randint(0, config.vocab_size, (micro_batch, seq + 1), device="cuda")
    autocast = precision == "bf16-mixed"

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = forward(x[:, :-1], targets=x[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    torch.cuda.reset_peak_memory_stats()
    from contextlib import nullcontext

    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    with sdpa_kernel(order, set_priority=True) if sdpa == "cudnn" else nullcontext():
        ms = statistics.median(cuda_time_ms(step, iters=iters, warmup=3 if not compile else 5))
        peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        by_kind = {}
        if profile:
            label = f"{model_name} {micro_batch}x{seq} {precision} compile={compile} sdpa={sdpa} fused={fused} step"
            by_kind = profile_kernels(step, profile, label=label)
    tokens_per_s = micro_batch * seq / (ms / 1e3)
    achieved = tokens_per_s * flops_per_token(config, n_params, seq) / 1e12
    return dict(
        bench="train_throughput", harness="step", model=model_name, seq=seq, micro_batch=micro_batch, precision=precision,
        compile=compile, sdpa=sdpa, fused=", ".join(kernels) or "none", step_ms=round(ms, 1), tokens_per_s=round(tokens_per_s),
        mfu_989=round(achieved / 989, 3), mfu_measured=round(achieved / peak, 3), peak_gib=peak_gib,
        **({"fp8": fp8} if fp8 != "none" else {}),
        **({"profile_ms": {kind: round(us / 1e3, 1) for kind, us in by_kind.items()}} if by_kind else {}),
    )


class RandomTokens:
    """A data module of uniformly random token blocks (seq + 1 tokens each)."""

    def __init__(self, vocab_size: int, blocks: int) -> None:
        self.vocab_size, self.blocks = vocab_size, blocks

    def connect(self, tokenizer=None, batch_size: int = 1, max_seq_length=None) -> None:
        self.batch_size, self.seq = batch_size, max_seq_length

    def check(self) -> None: ...
    def prepare_data(self) -> None: ...
    def setup(self, stage: str = "") -> None: ...

    def train_dataloader(self):
        data = torch.randint(0, self.vocab_size, (self.blocks, self.seq + 1), generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(data, batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self):
        return None


def run_loop(model_name: str, seq: int, micro_batch: int, steps: int, peak: float, fused: bool = True) -> dict:
    """`litgpt pretrain` as a user runs it, on random tokens; the median step time of the steps after the first 3.
    With `fused`, as LITGPT_FUSED_KERNELS says, or 1 (all, though the run compiles) where it is unset; without, as
    with LITGPT_FUSED_KERNELS=0."""
    from litgpt.data.base import DataModule
    from litgpt.train.args import EvalArgs, TrainArgs
    from litgpt.train.pretrain import setup

    config = Config.from_name(model_name)
    data = type("RandomTokensModule", (RandomTokens, DataModule), {})(config.vocab_size, steps * micro_batch)
    switch = os.environ.get(fused_kernels.ENV)
    if not fused or switch is None:
        os.environ[fused_kernels.ENV] = "1" if fused else "0"
    try:
        with tempfile.TemporaryDirectory() as out:
            torch.cuda.reset_peak_memory_stats()
            setup(
                model_name, out_dir=Path(out), data=data, devices=1, logger_name="csv",
                train=TrainArgs(save_interval=None, log_interval=1, global_batch_size=micro_batch, micro_batch_size=micro_batch,
                                max_steps=steps, max_seq_length=seq, max_norm=1.0, lr_warmup_steps=2, min_lr=4e-5),
                eval=EvalArgs(interval=10**9, initial_validation=False, final_validation=False),
            )
            rows = [row for path in Path(out).rglob("metrics.csv") for row in csv.DictReader(path.open()) if row.get("iter_time")]
    finally:  # the step harness, later in this process, reads the same switch
        if switch is None:
            os.environ.pop(fused_kernels.ENV, None)
        else:
            os.environ[fused_kernels.ENV] = switch
    times = [float(row["iter_time"]) for row in rows][3:]
    seconds = statistics.median(times)
    tokens_per_s = micro_batch * seq / seconds
    model = GPT(config)  # on the CPU, to count parameters
    n_params = sum(p.numel() for p in model.parameters()) - model.transformer.wte.weight.numel()
    achieved = tokens_per_s * flops_per_token(config, n_params, seq) / 1e12
    return dict(
        bench="train_throughput", harness="loop", model=model_name, seq=seq, micro_batch=micro_batch,
        precision="default (bf16-mixed)", compile="default (yes)", fused=os.environ.get(fused_kernels.ENV, "1") if fused else "off",
        step_ms=round(seconds * 1e3, 1), tokens_per_s=round(tokens_per_s),
        mfu_989=round(achieved / 989, 3), mfu_measured=round(achieved / peak, 3), peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1),
        steps_timed=len(times),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama-1.1b")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--micro_batch", type=int, nargs="+", default=[16])
    parser.add_argument("--precision", nargs="+", default=["bf16-mixed", "bf16-true"], choices=["bf16-mixed", "bf16-true"])
    parser.add_argument("--compile", choices=["no", "yes", "both"], default="both")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--harness", choices=["loop", "step", "both"], default="both")
    parser.add_argument("--sdpa", nargs="+", choices=["default", "cudnn"], default=["default"], help="attention kernels tried first (step harness)")
    parser.add_argument("--profile", type=int, default=0, help="profile this many steps (step harness) and print where their GPU time goes")
    parser.add_argument("--fused", choices=["on", "off", "both"], default="on", help="liger-kernel's fused RMSNorm, SwiGLU, RoPE (as training uses them)")
    args = parser.parse_args()
    peak = matmul_peak_tflops()
    emit(dict(bench="matmul_peak", tflops=round(peak, 1)))
    cases = []
    fused_settings = {"on": [True], "off": [False], "both": [False, True]}[args.fused]
    if args.harness in ("loop", "both"):
        for fused in fused_settings:
            case = run_loop(args.model, args.seq, args.micro_batch[0], max(args.iters, 6) + 3, peak, fused)
            emit(case)
            cases.append(case)
            torch.cuda.empty_cache()
        if args.harness == "loop":
            args.precision = []
    for precision in args.precision:
        for compile in {"no": [False], "yes": [True], "both": [False, True]}[args.compile]:
            for mb, sdpa, fused in [(mb, sdpa, fused) for mb in args.micro_batch for sdpa in args.sdpa for fused in fused_settings]:
                try:
                    case = run(args.model, args.seq, mb, precision, compile, args.iters, peak, sdpa, args.profile, fused)
                except torch.OutOfMemoryError:
                    case = dict(bench="train_throughput", model=args.model, micro_batch=mb, precision=precision, compile=compile,
                                fused=fused, error="OOM")
                torch.cuda.empty_cache()
                emit(case)
                cases.append(case)
    table(cases, ["model", "harness", "precision", "compile", "fused", "micro_batch", "tokens_per_s", "mfu_989", "mfu_measured", "peak_gib"])


if __name__ == "__main__":
    main()
