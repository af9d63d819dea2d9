"""fp8 against bf16: `litgpt pretrain` twice on the same data, seed and initial weights, once without and once with
`--fp8`; the loss curves side by side, the loss at chosen steps with the relative difference, and tokens/s of each.

    python benchmarks/fp8_loss_curve.py                 # one H100/H200: tiny-llama-1.1b, 500 steps of 4 x 2048, --fp8 rowwise
    python benchmarks/fp8_loss_curve.py --emulate       # CPUs, float8 emulated: an 8-layer, 256-wide model, 500 steps of 8 x 256
    python benchmarks/fp8_loss_curve.py --toy           # CPU smoke test: --emulate with a 2-layer model, 4 steps

Each run is the real command in its own process (`pretrain` of benchmarks/pretrain_scaling.py) on the same data in
the same order, from one randomly initialised
checkpoint written first (`--initial_checkpoint_dir`), with the command's defaults otherwise (bf16-mixed, compiled on
CUDA). The losses come from each run's CSV log (one row per step), tokens/s from the median step time after `--skip`
steps (compilation). Reported at each step of `--at`: both losses, their relative difference ((fp8 - bf16) / bf16),
and the same for the mean of the 10 steps up to it (single steps are noisy). The plot (matplotlib, Agg) shows both
curves and goes to `--plot` (default $OUT/fp8_loss.png when OUT is set, else ./fp8_loss.png).

`--emulate` runs both on the CPU through `benchmarks/on_cpus.py --emulate_fp8`: torchao's float8 casts and scales as
on a GPU, the products of the float8 values in fp32 (as a GPU's float8 matmul accumulates), in bf16-mixed. Its
numbers are a GPU's up to the order of sums, its speed is not (the tokens/s it prints are the CPU's); the model is
a Llama-like one sized for a CPU (`PROXY`), not tiny-llama-1.1b, so its curve shows how float8 numerics train a
small model of the same kind, as a stand-in until the GPU run.

The data (`--data`), all generated or shipped, as the GPU machines reach no data set:
- `bigram` (the default): `ZipfTokens --data.order 1` of benchmarks/synthetic_tokens.py, each token a Zipf draw
  shifted by a fixed random function of the one before. The loss stays near ln(vocab) for some 80 steps, then falls
  for hundreds of steps towards the draws' entropy, on blocks never seen before: something left to learn at each
  step of the comparison, and a floor far from 0, so that relative differences mean something.
- `zipf`: independent Zipf draws. A model learns their unigram law within some 30 steps and the loss levels off:
  from there on both curves lie on that floor, which says little (an emulated run of 500 steps agreed within 3e-5).
- `text`: the small corpus that ships with litgpt (litgpt/data/corpus, about 130k tokens of its 2,048-token
  tokenizer), read many times over in 500 steps: the model learns it by heart, the loss heads for 0, and relative
  differences there grow with noise (an emulated rowwise run: +1.0%, -4.0%, +4.9% at steps 100, 250, 500, at losses
  1.39, 0.46, 0.10).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import emit, table  # noqa: E402
from pretrain_scaling import TINY_CONFIG, failure, peak_cuda_gib, pretrain, read_log, write_initial_checkpoint  # noqa: E402

WINDOW = 10  # steps averaged for the smoothed comparison
# --emulate's model: Llama-like as tiny-llama-1.1b (RMSNorm, SwiGLU, RoPE, no biases), 8 blocks 256 wide (linear sizes multiples of 16)
PROXY = dict(name="fp8-proxy", block_size=256, vocab_size=2048, padded_vocab_size=2048, n_layer=8, n_head=4, n_query_groups=4,
             n_embd=256, rotary_percentage=1.0, parallel_residual=False, bias=False, norm_class_name="RMSNorm",
             mlp_class_name="LLaMAMLP", intermediate_size=688)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama-1.1b", help="a registry name, trained from random weights")
    parser.add_argument("--fp8", default="rowwise", choices=["rowwise", "tensorwise"], help="the --fp8 recipe of the second run")
    parser.add_argument("--data", choices=["bigram", "zipf", "text"], default="bigram", help="bigram: ZipfTokens --data.order 1; "
                        "zipf: ZipfTokens; text: litgpt's small corpus")
    parser.add_argument("--vocab", type=int, default=2048, help="token ids of the generated data (bigram, zipf): at most the "
                        "model's vocab; a bigram law of 2,048 rows is learnt within the 500 steps")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run; default 500 (4 with --toy)")
    parser.add_argument("--at", type=int, nargs="+", default=None, help="steps whose losses are compared; default 100 250 500 (2 3 4 with --toy)")
    parser.add_argument("--micro_batch", type=int, default=None, help="samples per forward; default 4 (8 with --emulate, 2 with --toy)")
    parser.add_argument("--global_batch", type=int, default=None, help="samples per optimizer step; default --micro_batch")
    parser.add_argument("--seq", type=int, default=None, help="default 2048 (256 with --emulate, 64 with --toy)")
    parser.add_argument("--lr", type=float, default=None, help="AdamW's learning rate; default 4e-4 (3e-3 with --toy)")
    parser.add_argument("--precision", default=None, help="both runs' --precision; default the command's (bf16-mixed on GPUs), "
                        "bf16-mixed with --emulate")
    parser.add_argument("--compile", choices=["default", "true", "false"], default="default")
    parser.add_argument("--skip", type=int, default=None, help="steps left out of the timing (compilation); default 10 (1 with --toy)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument("--plot", type=Path, default=None, help="the PNG to write; default $OUT/fp8_loss.png, or fp8_loss.png")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs' logs here (weights are deleted after use); a run "
                        "whose finished log is there already is read, not run again")
    parser.add_argument("--emulate", action="store_true", help="on the CPU, float8 emulated (benchmarks/on_cpus.py --emulate_fp8), "
                        "with an 8-layer, 256-wide Llama-like model")
    parser.add_argument("--toy", action="store_true", help="--emulate with a 2-layer, 64-wide model for 4 steps (a smoke test)")
    args = parser.parse_args(argv)
    toy = args.toy
    args.emulate = args.emulate or toy
    for name, gpu, emulated, small in (("steps", 500, 500, 4), ("micro_batch", 4, 8, 2), ("seq", 2048, 256, 64), ("lr", 4e-4, 4e-4, 3e-3),
                                       ("skip", 10, 10, 1)):
        if getattr(args, name) is None:
            setattr(args, name, small if toy else emulated if args.emulate else gpu)
    args.at = args.at or ([2, 3, 4] if toy else [100, 250, 500])
    args.global_batch = args.global_batch or args.micro_batch
    if args.global_batch % args.micro_batch:
        parser.error(f"--global_batch {args.global_batch} is not a multiple of --micro_batch {args.micro_batch}")
    if any(not 0 < step <= args.steps for step in args.at):
        parser.error(f"--at steps must lie in 1..--steps ({args.steps}), got {args.at}")
    if args.skip >= args.steps:
        parser.error(f"--skip ({args.skip}) must be less than --steps ({args.steps})")
    if args.emulate and args.precision is None:
        args.precision = "bf16-mixed"
    if args.plot is None:
        args.plot = Path(os.environ["OUT"]) / "fp8_loss.png" if os.environ.get("OUT") else Path("fp8_loss.png")
    # what pretrain_scaling.pretrain and write_initial_checkpoint read
    args.model_dict = TINY_CONFIG if toy else PROXY if args.emulate else None
    args.cpu, args.on_cpus, args.compile_cache, args.constant_lr = args.emulate, ["--emulate_fp8"] if args.emulate else [], "fresh", False
    if args.data == "text" and args.model_dict:  # the corpus's tokenizer has 2,048 tokens
        args.model_dict = {**args.model_dict, "vocab_size": 2048, "padded_vocab_size": 2048}
    args.label = (("toy (2 layers, 64 wide)" if toy else "8 layers, 256 wide") + ", float8 emulated on the CPU") if args.emulate else args.model
    args.recipes = ["none", args.fp8]
    return args


def settings(args: argparse.Namespace, recipe: str, vocab_size: int) -> str:
    """What decides a run's losses, as the JSON kept beside its log: a later call reuses the run only if they match."""
    keys = ("model", "model_dict", "data", "steps", "micro_batch", "global_batch", "seq", "lr", "precision", "compile", "seed", "emulate")
    return json.dumps({**{key: getattr(args, key) for key in keys}, "recipe": recipe, "vocab_size": vocab_size}, sort_keys=True)


def run_case(args: argparse.Namespace, name: str, recipe: str, out: Path, vocab_size: int) -> Dict:
    """One `litgpt pretrain` run with `--fp8 recipe`: its losses by step, tokens/s and peak memory (or the error)."""
    run_dir = out / (name if recipe == "none" else f"{name}-{recipe}")
    log, kept = run_dir / "run.log", run_dir / "settings.json"
    if (args.out is not None and log.is_file() and "Saved the trained model" in log.read_text(errors="replace")
            and len(read_log(run_dir)) == args.steps and kept.is_file() and kept.read_text() == settings(args, recipe, vocab_size)):
        print(f"Reusing the finished run in {run_dir}", flush=True)  # a second call that continues an interrupted comparison
        run = dict(status=0, output=log.read_text(errors="replace"), seconds=None)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        run = pretrain(args, 1, run_dir, vocab_size, out / "init", extra=["--fp8", recipe])
        kept.write_text(settings(args, recipe, vocab_size))
    shutil.rmtree(run_dir / "final", ignore_errors=True)
    case = dict(bench="fp8_loss_curve", run=name, fp8=recipe, model=args.label, data=args.data, steps=args.steps, micro_batch=args.micro_batch,
                global_batch=args.global_batch, seq=args.seq, precision=args.precision or "bf16-mixed (the default)", wall_s=run["seconds"])
    if run["status"] != 0:
        return failure(case, run)
    rows = read_log(run_dir)
    if sorted(rows) != list(range(1, args.steps + 1)):
        return {**case, "error": f"the log has steps {min(rows, default=None)}..{max(rows, default=None)} ({len(rows)}), not 1..{args.steps}"}
    accum = args.global_batch // args.micro_batch
    seconds = statistics.median(rows[s]["iter_time"] * accum for s in range(args.skip + 1, args.steps + 1))
    fp8_line = next((line for line in run["output"].splitlines() if line.startswith("fp8: ")), None)
    if recipe != "none" and fp8_line is None:
        return {**case, "error": "no 'fp8: N linear layers train in float8' line: the run did not convert any layer"}
    return dict(case, tokens_per_s=round(args.global_batch * args.seq / seconds), step_ms=round(seconds * 1e3, 1),
                peak_gib=peak_cuda_gib(run["output"]), fp8_layers=fp8_line, losses=[rows[s]["loss"] for s in range(1, args.steps + 1)])


def compare(args: argparse.Namespace, base: Dict, other: Dict) -> List[Dict]:
    """The losses of both runs at each step of --at, and their relative differences (single and WINDOW-step means)."""
    points = []
    for step in args.at:
        a, b = base["losses"][step - 1], other["losses"][step - 1]
        lo = max(0, step - WINDOW)
        mean_a, mean_b = statistics.fmean(base["losses"][lo:step]), statistics.fmean(other["losses"][lo:step])
        points.append(dict(bench="fp8_loss_point", step=step, loss_bf16=round(a, 4), loss_fp8=round(b, 4), rel_diff=float(f"{(b - a) / a:.3g}"),
                           mean10_bf16=round(mean_a, 4), mean10_fp8=round(mean_b, 4), mean10_rel_diff=float(f"{(mean_b - mean_a) / mean_a:.3g}")))
    return points


def plot(args: argparse.Namespace, base: Dict, other: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = list(range(1, args.steps + 1))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for case in (base, other):
        top.plot(steps, case["losses"], label=f"--fp8 {case['fp8']} ({case['tokens_per_s']:,} tok/s)", linewidth=1)
    top.set_ylabel("training loss")
    top.set_title(f"litgpt pretrain {args.label}\n{args.data} data, {args.global_batch} x {args.seq} tokens per step, {base['precision']}")
    top.legend()
    bottom.plot(steps, [(b - a) / a for a, b in zip(base["losses"], other["losses"])], linewidth=0.8, color="gray")
    bottom.axhline(0, color="black", linewidth=0.5)
    bottom.set_ylabel("(fp8 - bf16) / bf16")
    bottom.set_xlabel("step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def check_device(args: argparse.Namespace) -> None:
    """A clear error before any run: the fp8 comparison needs matplotlib, torchao, and (without --emulate) a CUDA GPU
    with float8 matmuls."""
    import importlib.util

    import torch

    if importlib.util.find_spec("matplotlib") is None:
        sys.exit("fp8_loss_curve: the plot needs matplotlib: pip install matplotlib")
    if importlib.util.find_spec("torchao") is None:
        sys.exit("fp8_loss_curve: --fp8 needs torchao: pip install torchao")
    if args.emulate:
        return
    if not torch.cuda.is_available():
        sys.exit("fp8_loss_curve: --fp8 needs a CUDA GPU of compute capability >= 8.9 and none is visible (--emulate runs on the CPU)")
    if torch.cuda.get_device_capability() < (8, 9):
        sys.exit(f"fp8_loss_curve: {torch.cuda.get_device_name()} has compute capability {torch.cuda.get_device_capability()}; --fp8 needs >= 8.9")


def main() -> None:
    args = parse_args()
    check_device(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through `pretrain`, which ends its run
    out = args.out or Path(tempfile.mkdtemp(prefix="fp8_loss_curve_"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        vocab_size = min(write_initial_checkpoint(args, out / "init"), args.vocab)  # the generated data's ids
        cases = []
        for name, recipe in zip(("bf16", "fp8"), args.recipes):
            cases.append(run_case(args, name, recipe, out, vocab_size))
            if "error" in cases[-1]:
                break
    finally:  # the weights are large: keep only the logs, and those only in --out
        shutil.rmtree(out / "init", ignore_errors=True)
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    for case in cases:
        emit({k: v for k, v in case.items() if k != "losses"})
    table(cases, ["run", "fp8", "tokens_per_s", "step_ms", "peak_gib", "fp8_layers", "wall_s", "error"])
    failed = [case for case in cases if "error" in case]
    if failed:
        for case in failed:
            print(f"fp8_loss_curve: the {case['run']} run failed ({case['error']}):", *case.get("output_tail", []), sep="\n  ", file=sys.stderr)
        sys.exit(1)
    points = compare(args, *cases)
    for point in points:
        emit(point)
    table(points, ["step", "loss_bf16", "loss_fp8", "rel_diff", "mean10_bf16", "mean10_fp8", "mean10_rel_diff"])
    plot(args, *cases, args.plot)
    speedup = cases[1]["tokens_per_s"] / cases[0]["tokens_per_s"]
    print(f"fp8/bf16 tokens/s: {speedup:.3f}; plot: {args.plot}")


if __name__ == "__main__":
    main()
