"""Multi-device pretraining: `litgpt pretrain` on 1, 2, 4, 8 devices with one global batch, and resuming on another count.

    python benchmarks/pretrain_scaling.py --devices 1 2 --resume 2:1          # tiny-llama-1.1b, seq 2048, GPUs
    python benchmarks/pretrain_scaling.py --tiny --devices 1 2 --resume 2:1 1:2   # a 2-layer model, a CPU smoke test
    python benchmarks/pretrain_scaling.py --devices 1 --resume --global_batch 16 --micro_batch 16 --reference   # beside LitGPT 0.5.13
    python benchmarks/pretrain_scaling.py --tiny --fsdp_on_cpus --devices 1 2 --resume 2:2 2:1 1:2   # FSDP without GPUs

Each case is the real command (`python -m litgpt pretrain`, in its own process, so several devices start the way
a user's run starts: FSDP over the GPUs, or DDP over gloo with `--cpu` or without GPUs; `--fsdp_on_cpus` runs it
through `benchmarks/on_cpus.py --fsdp`, which gives CPU processes the GPUs' FSDP strategy) on `ZipfTokens`
(benchmarks/synthetic_tokens.py). Every run starts from one randomly initialised checkpoint written once
(`--initial_checkpoint_dir`): the command's own random init draws from the CUDA generator on one GPU but the CPU
one under FSDP, so without it the runs would not start from the same weights.
The learning rate is constant (`--lr`, no warmup, `--train.min_lr` equal to it): the pretraining schedule's rate at a
step follows the micro-batches per step, as LitGPT's does, and the device count changes those.
Each run compiles into a new torch.compile cache of its own, as a user's first run does (`--compile_cache shared`
keeps the environment's, as a rerun or a resumed run finds it: such runs began host-bound on the H200, RESULTS.md).

Reported per device count: tokens/s in all and per device (median step time after `--skip` steps, from the CSV
log), scaling efficiency (per-device tokens/s against the 1-device run), peak memory (rank 0's CUDA peak, or the
largest process's resident memory on CPUs), the first steps' losses, and whether they equal the 1-device run's.
The global batch holds the same blocks on every count (block i goes to process i % N), so the runs compute the
same mean loss of the same weights on the same data; only arithmetic differs:
- 32-true: only the order of sums differs (gradient accumulation vs all-reduce): 1.6e-7 at most over the first
  5 steps of the tiny model on 2 CPU processes. Tolerance 1e-4.
- bf16-mixed: one GPU runs under autocast (fp32 weights, bf16 matmuls), FSDP casts the weights themselves to bf16
  and reduces gradients in bf16. bf16 keeps 8 bits of mantissa (relative step 2^-8 ≈ 4e-3) and the loss averages
  such errors over a batch, so the runs should agree to about 1e-3 (1.4e-4 measured for the tiny model on 2 CPU
  processes under `--fsdp_on_cpus`). Tolerance 1e-2 (0.1 nats at the initial ln(32000) ≈ 10.4), below what the loss
  falls in one early step on this data (0.3-0.4 nats for the tiny model), which a wrong learning rate, accumulation
  or sharding would change.

A resume case N:M saves a checkpoint at step `--resume_at` in the N-device run and continues it on M devices to
the same last step: the step counter must go on from the checkpoint, and the losses and learning rates of the
remaining steps must equal the uninterrupted N-device run's (same tolerance).

With `--reference [TREE]`, LitGPT 0.5.13's own `pretrain` also runs on one device, from its source tree (default
.ref/litgpt-0.5.13, made by `python benchmarks/reference.py prepare`) in its own process (PYTHONPATH the tree and
benchmarks/, the working directory its run folder), with the same flags, initial checkpoint and ZipfTokens blocks;
it has no --compile (it always compiles). LitGPT's loop checks two validation batches before training, so with
--reference every run gets `--data.val_blocks` (a validation set of 2 micro-batches; no run validates during the
timed steps). Its row is read the same way (its CSV log, its "Memory Used" line for the peak); its losses are
compared with our 1-device run's (same tolerance), and the ratios ours / LitGPT's of tokens/s and peak memory printed.

With `--fp8 RECIPE`, one more 1-device run of ours adds `--fp8 RECIPE` (float8 matmuls in the blocks), timed the same
way; its tokens/s over the bf16 run's and over LitGPT's are printed (its losses are not expected to equal bf16's:
benchmarks/fp8_loss_curve.py compares the curves).
"""

import argparse
import csv
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import reference  # noqa: E402
from common import emit, run_command, table  # noqa: E402

TINY_CONFIG = dict(
    name="tiny", block_size=128, vocab_size=512, padded_vocab_size=512, n_layer=2, n_head=2, n_embd=64,
    rotary_percentage=1.0, parallel_residual=False, bias=False, norm_class_name="RMSNorm",
    mlp_class_name="LLaMAMLP", intermediate_size=128,
)
LOSS_RTOL = {"32-true": 1e-4}  # every other precision: 1e-2, see the module docstring
OURS = "this project"


def write_initial_checkpoint(args: argparse.Namespace, folder: Path) -> int:
    """A randomly initialised checkpoint of the model (the command's own init on the CPU); returns its vocab size."""
    import torch

    sys.path.insert(0, str(HERE.parent))
    from litgpt.config import Config
    from litgpt.model import GPT
    from litgpt.train.pretrain import init_weights

    config = Config(**args.model_dict) if args.model_dict else Config.from_name(args.model)
    torch.manual_seed(args.seed)
    model = GPT(config)
    init_weights(model)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "lit_model.pth")
    config.save(folder / "model_config.yaml")
    return config.vocab_size


def text_data_flags() -> List[str]:
    """The small corpus that ships with litgpt (litgpt/data/corpus: about 430 kB of text, tokenized already) and its
    2,048-token tokenizer, as `--data` flags."""
    corpus = str(HERE.parent / "litgpt" / "data" / "corpus")
    return ["--data", "TextFiles", "--data.train_data_path", corpus, "--data.num_workers", "0", "--tokenizer_dir", corpus]


def pretrain(args: argparse.Namespace, devices: int, out_dir: Path, vocab_size: int, init_dir: Path,
             save_at: Optional[int] = None, resume: Optional[Path] = None, extra: Sequence[str] = (),
             tree: Optional[Path] = None) -> Dict:
    """Run `litgpt pretrain` (with the flags `extra` besides its own; LitGPT's own from `tree` if given) in a child
    process; its exit status, output and peak resident memory."""
    optimizer = {"class_path": "torch.optim.AdamW", "init_args": {"lr": args.lr, "weight_decay": 0.1, "betas": [0.9, 0.95]}}
    command = [
        # the model name positional (LitGPT 0.5.13 takes it no other way) and required there even with --model_config,
        # which wins in both
        sys.executable, *([str(HERE / "on_cpus.py"), *args.on_cpus] if args.on_cpus else ["-m", "litgpt"]), "pretrain",
        args.model_dict["name"] if args.model_dict else args.model,
        *(["--model_config", str(init_dir / "model_config.yaml")] if args.model_dict else []),
        *(text_data_flags() if args.data == "text" else ["--data", "synthetic_tokens.ZipfTokens", "--data.vocab_size", str(vocab_size)]),
        *(["--data.order", "1"] if args.data == "bigram" else []),
        "--out_dir", str(out_dir),
        "--devices", str(devices), "--logger_name", "csv", "--optimizer", json.dumps(optimizer), "--seed", str(args.seed),
        # LitGPT 0.5.13's pretrain ignores max_steps (it warns) and stops, and ends its schedule, at max_tokens; ours
        # takes the tighter of the two: these are equal
        "--train.max_steps", str(args.steps), "--train.max_tokens", str(args.steps * args.global_batch * args.seq),
        "--train.global_batch_size", str(args.global_batch),
        "--train.micro_batch_size", str(args.micro_batch), "--train.max_seq_length", str(args.seq),
        *(["--train.lr_warmup_steps", "0", "--train.min_lr", str(args.lr)] if args.constant_lr else ["--train.lr_warmup_steps", "2"]),
        "--train.log_interval", "1", "--train.max_norm", "1.0",
        "--train.save_interval", str(save_at) if save_at else "null", "--eval.final_validation", "false",
    ]
    command += ["--resume", str(resume)] if resume else ["--initial_checkpoint_dir", str(init_dir)]
    command += ["--precision", args.precision] if args.precision else []
    command += ["--compile", args.compile] if args.compile != "default" and tree is None else []
    command += ["--data.val_blocks", str(2 * args.micro_batch)] if getattr(args, "reference", None) else []
    command += list(extra)
    if tree is None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    else:
        env = reference.env(tree, [str(HERE)])
    if args.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "command.txt").write_text(" ".join(command) + "\n")
    return run_command(command, out_dir / "run.log", args.timeout, env, cwd=out_dir if tree is not None else None,
                       compile_cache=None if args.compile_cache == "shared" else out_dir / "compile_cache")


def read_log(out_dir: Path) -> Dict[int, Dict[str, float]]:
    """The logged metrics by optimizer step, from the CSV log(s) of `out_dir`."""
    rows: Dict[int, Dict[str, float]] = {}
    for path in sorted((out_dir / "logs" / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("loss"):
                    rows[int(row["step"])] = {k: float(v) for k, v in row.items() if v not in ("", None)}
    return rows


def peak_cuda_gib(output: str) -> Optional[float]:
    for line in output.splitlines():
        if line.startswith("Peak memory:"):
            return round(float(line.split()[2]) * 1e9 / 2**30, 1)
    return None


def max_rel_diff(a: List[float], b: List[float]) -> Optional[float]:
    if not a or len(a) != len(b):
        return None
    return max(abs(x - y) / abs(y) for x, y in zip(a, b))


def failure(case: Dict, run: Dict) -> Dict:
    tail = [line for line in run["output"].splitlines() if line.strip()][-6:]
    return {**case, "error": f"exit {run['status']}", "output_tail": tail}


def scaling_case(args: argparse.Namespace, devices: int, run: Dict, out_dir: Path, strategy: str, label: str = OURS, kind: str = "ours") -> Dict:
    """A timed run read from its log; `kind`: "ours" (the device-count runs), "ours fp8" or "litgpt"."""
    case = dict(bench="pretrain_scaling", run=label, kind=kind, model=args.model_label, devices=devices, strategy=strategy, seq=args.seq,
                global_batch=args.global_batch, micro_batch=args.micro_batch, precision=args.precision or "default",
                compile=args.compile if kind != "litgpt" else "always (no such flag)", wall_s=run["seconds"])
    if run["status"] != 0:
        return failure(case, run)
    rows = read_log(out_dir)
    accum = args.global_batch // (devices * args.micro_batch)
    steps = sorted(rows)
    step_s = [rows[s]["iter_time"] * accum for s in steps[args.skip:]]
    seconds = statistics.median(step_s)
    tokens_per_s = args.global_batch * args.seq / seconds
    mfu = [rows[s]["throughput/device/mfu"] for s in steps[args.skip:] if "throughput/device/mfu" in rows[s]]
    case.update(
        steps=len(steps), steps_timed=len(step_s), step_ms=round(seconds * 1e3, 1), tokens_per_s=round(tokens_per_s),
        tokens_per_s_per_device=round(tokens_per_s / devices), mfu=round(statistics.median(mfu), 3) if mfu else None,
        peak_gib=peak_cuda_gib(run["output"]) if kind != "litgpt" else reference.peak_gib(run["output"]), peak_rss_gib=run["peak_rss_gib"],
        first_losses=[round(rows[s]["loss"], 4) for s in steps[: args.compare_steps]],
        _losses=[rows[s]["loss"] for s in steps[: args.compare_steps]],
    )
    return case


def resume_case(args: argparse.Namespace, source: int, target: int, run: Dict, out_dir: Path, reference: Dict[int, Dict[str, float]], rtol: float) -> Dict:
    case = dict(bench="pretrain_resume", model=args.model_label, saved_with=source, resumed_with=target, saved_at=args.resume_at,
                precision=args.precision or "default", wall_s=run["seconds"])
    if run["status"] != 0:
        return failure(case, run)
    rows = read_log(out_dir)
    steps = sorted(rows)
    expected = list(range(args.resume_at + 1, args.steps + 1))
    loss_diff = max_rel_diff([rows[s]["loss"] for s in expected if s in rows], [reference[s]["loss"] for s in expected if s in rows])
    lr_diff = max_rel_diff([rows[s]["learning_rate"] for s in expected if s in rows], [reference[s]["learning_rate"] for s in expected if s in rows])
    tokens_ok = all(rows[s]["total_tokens"] == reference[s]["total_tokens"] for s in expected if s in rows)
    case.update(
        logged_steps=f"{steps[0]}-{steps[-1]}" if steps else "none", steps_continue=steps == expected,
        resumed_losses=[round(rows[s]["loss"], 4) for s in steps], uninterrupted_losses=[round(reference[s]["loss"], 4) for s in expected],
        loss_max_rel_diff=None if loss_diff is None else float(f"{loss_diff:.2g}"), lr_max_rel_diff=None if lr_diff is None else float(f"{lr_diff:.2g}"),
        total_tokens_continue=tokens_ok,
    )
    case["ok"] = bool(case["steps_continue"] and tokens_ok and loss_diff is not None and loss_diff <= rtol and lr_diff is not None and lr_diff <= 1e-6)
    return case


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line, with the defaults that depend on --tiny filled in and the counts checked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama-1.1b", help="a registry name, trained from random weights")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer, 64-wide model at seq 128 in 32-true (a smoke test; CPU-sized)")
    parser.add_argument("--devices", type=int, nargs="*", default=[1, 2, 4, 8], help="device counts to time (none: only --resume)")
    parser.add_argument("--resume", nargs="*", default=["2:1"], metavar="N:M", help="save on N devices, resume on M")
    parser.add_argument("--seq", type=int, default=None, help="default 2048 (128 with --tiny)")
    parser.add_argument("--global_batch", type=int, default=None, help="samples per optimizer step; default 64 (8 with --tiny)")
    parser.add_argument("--micro_batch", type=int, default=None, help="samples per device per forward; default 8 (2 with --tiny)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run; default 10 (6 with --tiny)")
    parser.add_argument("--resume_at", type=int, default=None, help="the step the N-device run saves at; default steps // 2 + 1")
    parser.add_argument("--compare_steps", type=int, default=5, help="the first steps whose losses are compared")
    parser.add_argument("--skip", type=int, default=None, help="steps left out of the timing (compilation); default 3 (1 with --tiny)")
    parser.add_argument("--lr", type=float, default=None, help="AdamW's learning rate; default 4e-4 (3e-3 with --tiny)")
    parser.add_argument("--precision", default=None, help="default: the command's (bf16-mixed on GPUs, 32-true on CPUs; 32-true with --tiny)")
    parser.add_argument("--compile", choices=["default", "true", "false"], default="default")
    parser.add_argument("--cpu", action="store_true", help="hide the GPUs: several devices are DDP processes over gloo")
    parser.add_argument("--fsdp_on_cpus", action="store_true", help="with --cpu implied: several devices are CPU processes "
                        "under the GPUs' FSDP strategy (benchmarks/on_cpus.py --fsdp)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fp8", choices=["rowwise", "tensorwise"], default=None, help="also a 1-device run with --fp8 RECIPE")
    parser.add_argument("--compile_cache", choices=["fresh", "shared"], default="fresh",
                        help="fresh: each run compiles into a new cache, as a first run does; shared: the environment's "
                        "cache (TORCHINDUCTOR_CACHE_DIR or its default), as a rerun or a resumed run finds it")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs' logs here (weights are deleted after use)")
    parser.add_argument("--reference", type=Path, nargs="?", const=reference.DEFAULT_TREE, default=None, metavar="TREE",
                        help=f"also run {reference.LABEL}'s pretrain on 1 device from this tree (default .ref/litgpt-{reference.VERSION})")
    args = parser.parse_args(argv)
    tiny = args.tiny
    for name, full, small in (("seq", 2048, 128), ("global_batch", 64, 8), ("micro_batch", 8, 2), ("steps", 10, 6), ("skip", 3, 1), ("lr", 4e-4, 3e-3)):
        if getattr(args, name) is None:
            setattr(args, name, small if tiny else full)
    if tiny and args.precision is None:
        args.precision = "32-true"
    args.cpu = args.cpu or args.fsdp_on_cpus
    # what `pretrain` and `write_initial_checkpoint` read: the model (a registry name's unless a dict), and the
    # switches of benchmarks/on_cpus.py the command runs through (none: `python -m litgpt`)
    args.model_dict = TINY_CONFIG if tiny else None
    args.on_cpus = ["--fsdp"] if args.fsdp_on_cpus else []
    args.data = "zipf"  # ZipfTokens of independent draws
    # the pretraining schedule's lr at a step follows the micro-batches per step (LitGPT's), which the device count
    # changes: only a constant lr (no warmup, cosine down to lr itself) is the same on every count
    args.constant_lr = True
    if args.fsdp_on_cpus and args.reference is not None:
        parser.error("--fsdp_on_cpus runs this project's command only; leave out --reference")
    args.resume_at = args.resume_at or args.steps // 2 + 1
    args.model_label = "tiny (2 layers, 64 wide)" if tiny else args.model
    try:
        args.pairs = [tuple(int(n) for n in pair.split(":")) for pair in args.resume]
    except ValueError:
        parser.error(f"--resume takes pairs N:M of device counts, got {args.resume}")
    if any(len(pair) != 2 or min(pair) < 1 for pair in args.pairs):
        parser.error(f"--resume takes pairs N:M of device counts, got {args.resume}")
    for n in sorted(set(args.devices) | {n for pair in args.pairs for n in pair}):
        if args.global_batch % (n * args.micro_batch):
            parser.error(f"--global_batch {args.global_batch} is not a multiple of {n} devices x --micro_batch {args.micro_batch}")
    if not 0 < args.resume_at < args.steps:
        parser.error(f"--resume_at must be between 0 and --steps {args.steps}")
    if args.compare_steps > args.steps or args.skip >= args.steps:
        parser.error("--compare_steps must be at most --steps, and --skip less than --steps")
    return args


def single_device_case(args: argparse.Namespace, out: Path, name: str, label: str, kind: str, vocab_size: int, **kwargs: Any) -> Dict:
    """One more 1-device run in a clean folder `out/name` (the `pretrain` keyword arguments `kwargs`), read as a
    scaling case labelled `label` of `kind`; its final weights deleted."""
    run_dir = out / name
    shutil.rmtree(run_dir, ignore_errors=True)
    run = pretrain(args, 1, run_dir, vocab_size, out / "init", **kwargs)
    case = scaling_case(args, 1, run, run_dir, "single device", label, kind)
    shutil.rmtree(run_dir / "final", ignore_errors=True)
    return case


def run_cases(args: argparse.Namespace, out: Path, gpus: int, rtol: float) -> Tuple[List[Dict], List[Dict]]:
    """The scaling cases (one run per device count) and the resume cases, each emitted as it completes."""
    vocab_size = write_initial_checkpoint(args, out / "init")
    cases: List[Dict] = []
    logs: Dict[int, Dict[int, Dict[str, float]]] = {}
    for n in sorted(set(args.devices) | {pair[0] for pair in args.pairs}):
        strategy = "single device" if n == 1 else ("FSDP" if gpus else "FSDP (gloo, CPUs)" if args.fsdp_on_cpus else "DDP (gloo)")
        run_dir = out / f"devices-{n}"
        shutil.rmtree(run_dir, ignore_errors=True)
        saves = any(pair[0] == n for pair in args.pairs)
        run = pretrain(args, n, run_dir, vocab_size, out / "init", save_at=args.resume_at if saves else None)
        case = scaling_case(args, n, run, run_dir, strategy)
        if run["status"] == 0:
            logs[n] = read_log(run_dir)
        shutil.rmtree(run_dir / "final", ignore_errors=True)
        if n in args.devices:
            cases.append(case)
    if args.reference is not None:  # LitGPT 0.5.13's own pretrain with the same flags, initial checkpoint and data
        cases.append(single_device_case(args, out, f"litgpt-{reference.VERSION}", reference.LABEL, "litgpt", vocab_size, tree=args.tree))
    if args.fp8 is not None:
        cases.append(single_device_case(args, out, "fp8", f"{OURS}, --fp8 {args.fp8}", "ours fp8", vocab_size, extra=["--fp8", args.fp8]))
    base = next((c for c in cases if c["devices"] == 1 and c["kind"] == "ours" and "error" not in c), None)
    litgpt = next((c for c in cases if c["kind"] == "litgpt" and "error" not in c), None)
    for case in cases:
        if base is not None and "error" not in case:
            if case["kind"] == "ours fp8":  # over the bf16 run, and over LitGPT's (bf16) where it ran
                case["over_bf16_tokens_per_s"] = round(case["tokens_per_s"] / base["tokens_per_s"], 3)
                case["over_litgpt_tokens_per_s"] = round(case["tokens_per_s"] / litgpt["tokens_per_s"], 3) if litgpt else None
            elif case["kind"] == "ours":
                case["scaling_efficiency"] = round(case["tokens_per_s_per_device"] / base["tokens_per_s_per_device"], 3)
            else:  # ours (1 device) over LitGPT's
                for key in ("tokens_per_s", "peak_gib"):
                    case[f"ours_over_{key}"] = round(base[key] / case[key], 3) if base.get(key) and case.get(key) else None
            diff = max_rel_diff(case["_losses"], base["_losses"])
            case["loss_max_rel_diff"] = None if diff is None else float(f"{diff:.2g}")
            case["losses_match"] = diff is not None and diff <= rtol
    for case in cases:
        case.pop("_losses", None)
        emit(case)

    resumes: List[Dict] = []
    for source, target in args.pairs:
        checkpoint = out / f"devices-{source}" / f"step-{args.resume_at:08d}"
        if source not in logs or not checkpoint.is_dir():
            resumes.append(dict(bench="pretrain_resume", saved_with=source, resumed_with=target, error=f"no checkpoint from the {source}-device run"))
        else:
            run_dir = out / f"resume-{source}-to-{target}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run = pretrain(args, target, run_dir, vocab_size, out / "init", resume=checkpoint)
            resumes.append(resume_case(args, source, target, run, run_dir, logs[source], rtol))
            for folder in [run_dir / "final", *run_dir.glob("step-*")]:
                shutil.rmtree(folder, ignore_errors=True)
        emit(resumes[-1])
    return cases, resumes


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through `pretrain`, which ends its run

    import torch

    gpus = 0 if args.cpu else torch.cuda.device_count()
    precision = args.precision or ("bf16-mixed" if gpus else "32-true")
    rtol = LOSS_RTOL.get(precision, 1e-2)
    if args.reference is not None:
        try:
            args.tree = reference.tree(args.reference)
            reference.check(args.tree, [str(HERE)])
        except reference.ReferenceError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
    out = args.out or Path(tempfile.mkdtemp(prefix="pretrain_scaling_"))
    out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0) if gpus else "cpu"
    emit(dict(bench="setup", model=args.model_label, device=device, gpus_visible=gpus, precision=precision, loss_rtol=rtol, out=str(out)))
    try:
        cases, resumes = run_cases(args, out, gpus, rtol)
    finally:  # the weights are large: keep only the logs, and those only in --out
        for folder in [out / "init", *out.glob("*/step-*"), *out.glob("*/final")]:
            shutil.rmtree(folder, ignore_errors=True)
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    table(cases, ["run", "devices", "strategy", "tokens_per_s", "tokens_per_s_per_device", "scaling_efficiency", "mfu", "peak_gib",
                  "peak_rss_gib", "first_losses", "loss_max_rel_diff", "losses_match", "error"])
    table(resumes, ["saved_with", "resumed_with", "saved_at", "logged_steps", "steps_continue", "loss_max_rel_diff",
                    "lr_max_rel_diff", "total_tokens_continue", "ok", "error"])
    for case in cases:
        if "over_bf16_tokens_per_s" in case:
            versus = f", over {reference.LABEL}: x{case['over_litgpt_tokens_per_s']}" if case["over_litgpt_tokens_per_s"] else ""
            print(f"{case['run']} / bf16: tokens/s x{case['over_bf16_tokens_per_s']}{versus}")
        if "ours_over_tokens_per_s" in case:
            print(f"ours (1 device) / {case['run']}: tokens/s x{case['ours_over_tokens_per_s']}, peak memory x{case['ours_over_peak_gib']},"
                  f" losses match: {case['losses_match']} (max rel diff {case['loss_max_rel_diff']})")


if __name__ == "__main__":
    main()
