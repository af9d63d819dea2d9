"""`litgpt finetune_lora` as a user runs it: tokens/s and peak GPU memory of the real command, per --compile setting.

    python benchmarks/finetune_command.py --out $OUT/finetune_command        # Llama-3.2-1B, 8 x 2048, r 8; compile default, false
    python benchmarks/finetune_command.py --compile true --steps 40          # one setting, more steps
    python benchmarks/finetune_command.py --toy                              # a 2-layer model on the CPU: the plumbing
    python benchmarks/finetune_command.py --reference                        # and LitGPT 0.5.13 (.ref/, benchmarks/reference.py)

Each case is `python -m litgpt finetune_lora CKPT --data JSON --data.json_path DATA --train.micro_batch_size 8
--train.global_batch_size 8 --train.max_seq_length 2048 --train.max_steps N --lora_r 8` with evaluation off
(`--eval.interval 100000 --eval.initial_validation false --eval.final_validation false`) and `--out_dir` in a
scratch folder, in its own process; every other flag keeps the command's default (precision, LoRA layers, optimizer,
fused kernels) and `--compile` is passed only when the case is not "default". The inputs, written once:
- CKPT: the registry config (`--model`) with random weights saved in bf16 (as a converted Hugging Face checkpoint
  holds them; the command trains the base weights in the dtype they are saved in), model_config.yaml, and the
  2,048-token byte-level BPE tokenizer of litgpt/data/corpus/ (`common.write_random_checkpoint`).
- DATA: a folder with train.json (steps x global batch records: one epoch) and val.json (2 records). Every record
  is a fixed instruction in the data set's default prompt style and a response of random word tokens, exactly `--seq`
  tokens in all as the command tokenizes them (checked here through the JSON data module itself), so every row of
  every micro-batch is full. (They cannot be longer: the command refuses a file whose records are all longer than
  --train.max_seq_length, and cuts samples to it.) The loop feeds a row's first seq - 1 tokens and counts those.

With `--reference [TREE]`, LitGPT 0.5.13's own `finetune_lora` runs last, from its source tree (default
.ref/litgpt-0.5.13, made by `python benchmarks/reference.py prepare`) in its own process (PYTHONPATH the tree, the
working directory its run folder), on the same checkpoint folder and data with the same flags; it has no --compile
(it trains eagerly). Its figures are read the same way from its CSV log, which holds a row per micro-batch (ours,
one per optimizer step) whose `tokens` count every token of a row (it feeds all seq of them), and its peak from the
"Memory Used: X GB" line of the report it prints (torch.cuda.max_memory_allocated too). The ratios ours / LitGPT's
of tokens/s and peak memory are printed last, one line per --compile case.

Read from the run itself: tokens/s per step from its CSV log (that step's counted tokens over its `iter_time` x
gradient accumulation; the median over the steps after `--skip`, which leaves out compilation), the loop's own
tokens/s at the last step (its rate over the last 10 steps, as its log line prints it), the first step's seconds
(compilation shows there), and the peak GPU memory the command prints when it ends ("Peak memory: X GB",
torch.cuda.max_memory_allocated, shown here in GiB). Wall seconds are the whole command: start-up, loading,
compilation, training and saving final/.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import reference  # noqa: E402
from common import emit, run_command, table, write_random_checkpoint  # noqa: E402
from pretrain_scaling import failure, peak_cuda_gib, read_log  # noqa: E402
from serve_throughput import make_prompts, tiny_config, word_tokens  # noqa: E402

INSTRUCTION = "Continue the story."
OURS = "this project"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Llama-3.2-1B", help="a registry name (random weights)")
    parser.add_argument("--toy", action="store_true", help="a 2-layer, 64-wide model on the CPU: 3 steps of 2 x 128 (a smoke test)")
    parser.add_argument("--compile", nargs="+", choices=["default", "true", "false"], default=["default", "false"],
                        help="one run per value; default: the command's own choice (no --compile flag)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run; default 30 (3 with --toy)")
    parser.add_argument("--skip", type=int, default=None, help="first steps left out of the median; default 5 (1 with --toy)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per sample (--train.max_seq_length); default 2048 (128 with --toy: the Alpaca prompt alone is 84 tokens of the toy tokenizer)")
    parser.add_argument("--micro_batch", type=int, default=None, help="--train.micro_batch_size; default 8 (2 with --toy)")
    parser.add_argument("--global_batch", type=int, default=None, help="--train.global_batch_size; default the micro-batch")
    parser.add_argument("--lora_r", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--timeout", type=float, default=540, help="seconds per run")
    parser.add_argument("--out", type=Path, default=None, help="keep each run's output and CSV log here (weights are deleted)")
    parser.add_argument("--reference", type=Path, nargs="?", const=reference.DEFAULT_TREE, default=None, metavar="TREE",
                        help=f"also run {reference.LABEL}'s finetune_lora from this tree (default .ref/litgpt-{reference.VERSION})")
    args = parser.parse_args(argv)
    for name, full, toy in (("steps", 30, 3), ("skip", 5, 1), ("seq", 2048, 128), ("micro_batch", 8, 2)):
        if getattr(args, name) is None:
            setattr(args, name, toy if args.toy else full)
    args.global_batch = args.global_batch or args.micro_batch
    if args.global_batch % args.micro_batch:
        parser.error(f"--global_batch {args.global_batch} is not a multiple of --micro_batch {args.micro_batch}")
    if not 0 <= args.skip < args.steps:
        parser.error(f"--skip must be at least 0 and less than --steps ({args.steps})")
    args.model_label = "toy (2 layers, 64 wide)" if args.toy else args.model
    return args


def write_inputs(args: argparse.Namespace, work: Path) -> Dict[str, Path]:
    """The checkpoint folder and the JSON data folder of every run."""
    import torch

    from litgpt.config import Config

    config = tiny_config() if args.toy else Config.from_name(args.model)
    device = "cuda" if torch.cuda.is_available() and not args.toy else "cpu"
    checkpoint = work / "checkpoint"
    write_random_checkpoint(checkpoint, config, device, "32-true" if args.toy else "bf16-true", args.seed)
    data = work / "data"
    write_data(data, checkpoint, args)
    return dict(checkpoint=checkpoint, data=data)


def write_data(folder: Path, checkpoint: Path, args: argparse.Namespace) -> None:
    """train.json and val.json of records that are exactly `args.seq` tokens each, as `--data JSON` tokenizes them."""
    from litgpt.data import JSON
    from litgpt.tokenizer import Tokenizer

    tokenizer = Tokenizer(checkpoint)
    data = JSON(json_path=folder)  # the command's defaults: prompt style, EOS after the response
    prompt = len(tokenizer.encode(data.prompt_style.apply(INSTRUCTION)))
    response = args.seq - prompt - 1  # its words, then EOS
    if response < 1:
        raise ValueError(f"--seq {args.seq} leaves no room for a response after the {prompt}-token prompt")
    n_train = args.steps * args.global_batch
    texts = make_prompts(tokenizer, word_tokens(tokenizer), n_train + 2, response, args.seed)
    records = [{"instruction": INSTRUCTION, "output": text} for text in texts]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.json").write_text(json.dumps(records[:n_train]), encoding="utf-8")
    (folder / "val.json").write_text(json.dumps(records[n_train:]), encoding="utf-8")
    data.connect(tokenizer=tokenizer, batch_size=args.micro_batch, max_seq_length=None)  # uncut, to count
    data.setup()
    lengths = {sum(len(ids) for ids in dataset.encode(i)) for dataset in (data.train_dataset, data.test_dataset) for i in range(len(dataset))}
    if lengths != {args.seq}:
        raise AssertionError(f"the records tokenize to {sorted(lengths)} tokens, not {args.seq}")


def finetune(args: argparse.Namespace, compile: str, inputs: Dict[str, Path], out_dir: Path, tree: Optional[Path] = None) -> Dict:
    """`litgpt finetune_lora` in a child process (LitGPT's own from `tree` if given): its status, output, wall seconds
    and peak resident memory."""
    command = [
        sys.executable, "-m", "litgpt", "finetune_lora", str(inputs["checkpoint"]), "--out_dir", str(out_dir),
        "--data", "JSON", "--data.json_path", str(inputs["data"]),
        "--train.micro_batch_size", str(args.micro_batch), "--train.global_batch_size", str(args.global_batch),
        "--train.max_seq_length", str(args.seq), "--train.max_steps", str(args.steps), "--lora_r", str(args.lora_r),
        "--eval.interval", "100000", "--eval.initial_validation", "false", "--eval.final_validation", "false",
    ]
    command += ["--compile", compile] if compile != "default" and tree is None else []
    if tree is None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    else:
        env = reference.env(tree)
    if args.toy:
        env["CUDA_VISIBLE_DEVICES"] = ""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "command.txt").write_text(" ".join(command) + "\n")
    return run_command(command, out_dir / "run.log", args.timeout, env, cwd=out_dir if tree is not None else None,
                       compile_cache=out_dir / "compile_cache")


def result(args: argparse.Namespace, compile: str, run: Dict, out_dir: Path, label: str = OURS) -> Dict:
    """The case of one run (ours, or LitGPT's with `label` reference.LABEL): tokens/s from its CSV log, peak memory
    from its output."""
    case = dict(bench="finetune_command", run=label, model=args.model_label, compile=compile, lora_r=args.lora_r, seq=args.seq,
                micro_batch=args.micro_batch, global_batch=args.global_batch, wall_s=run["seconds"])
    if run["status"] != 0:
        return failure(case, run)
    rows = read_log(out_dir)
    steps = sorted(rows)  # the CSV's step column: our optimizer steps, LitGPT's micro-batches (iterations)
    accum = args.global_batch // args.micro_batch
    per_row = accum if label == OURS else 1  # micro-batches per CSV row
    rows_per_step = accum // per_row
    tokens = {s: rows[s]["tokens"] - rows.get(s - 1, {"tokens": 0})["tokens"] for s in steps}
    seconds = {s: rows[s]["iter_time"] * per_row for s in steps}
    timed = [s for s in steps if s > args.skip * rows_per_step]
    rates = [tokens[s] / seconds[s] for s in timed]
    last = rows[steps[-1]] if steps else {}
    fused = [line for line in run["output"].splitlines() if line.startswith("Fused kernels")]
    case.update(
        steps=len(steps) // rows_per_step, steps_timed=len(timed) // rows_per_step,
        row_tokens=int(tokens[steps[-1]] // (per_row * args.micro_batch)) if steps else None,
        tokens_per_s=round(statistics.median(rates)) if rates else None,
        step_ms=round(statistics.median(seconds[s] for s in timed) * rows_per_step * 1e3, 1) if timed else None,
        loop_tokens_per_s=round(last["throughput/tokens_per_sec"]) if "throughput/tokens_per_sec" in last else None,
        first_step_s=round(sum(seconds[s] for s in steps[:rows_per_step]), 1) if steps else None,
        peak_gib=peak_cuda_gib(run["output"]) if label == OURS else reference.peak_gib(run["output"]), peak_rss_gib=run["peak_rss_gib"],
        final_loss=round(last["loss"], 4) if "loss" in last else None, fused=fused[0] if fused else None,
    )
    if len(steps) != args.steps * rows_per_step:
        case["error"] = f"logged {len(steps)} rows, not {args.steps * rows_per_step} ({args.steps} steps)"
    return case


def ratios(cases: List[Dict]) -> List[Dict]:
    """Ours / LitGPT's tokens/s and peak memory, one per case of ours, when both ran."""
    theirs = next((c for c in cases if c["run"] == reference.LABEL and "error" not in c), None)
    out = []
    for case in cases:
        if theirs is None or case["run"] != OURS or "error" in case:
            continue
        ratio = dict(bench="finetune_command_ratio", compile=case["compile"], against=reference.LABEL)
        for key in ("tokens_per_s", "peak_gib"):
            ratio[key] = round(case[key] / theirs[key], 3) if case.get(key) and theirs.get(key) else None
        out.append(ratio)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    import torch

    args = parse_args(argv)
    runs = [(OURS, compile, f"compile-{compile}", None) for compile in args.compile]
    if args.reference is not None:
        try:
            tree = reference.tree(args.reference)
            reference.check(tree)
        except reference.ReferenceError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        runs.append((reference.LABEL, "none (no such flag)", f"litgpt-{reference.VERSION}", tree))
    work = Path(tempfile.mkdtemp(prefix="finetune_command_"))
    out = args.out or work / "runs"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.toy else None
    emit(dict(bench="setup", model=args.model_label, device=gpu or "cpu", torch=torch.__version__, out=str(out)))
    cases = []
    try:
        try:
            inputs = write_inputs(args, work)
        except ValueError as error:  # a --seq too short for the prompt, a --model whose vocabulary is too small
            print(f"error: {error}", file=sys.stderr)
            return 2
        for label, compile, folder, tree in runs:
            run_dir = out / folder
            shutil.rmtree(run_dir, ignore_errors=True)
            run = finetune(args, compile, inputs, run_dir, tree)
            cases.append(result(args, compile, run, run_dir, label))
            shutil.rmtree(run_dir / "final", ignore_errors=True)  # the weights; the logs stay in --out
            emit(cases[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table(cases, ["run", "compile", "steps", "steps_timed", "row_tokens", "tokens_per_s", "loop_tokens_per_s", "step_ms", "first_step_s",
                  "peak_gib", "wall_s", "error"])
    for ratio in ratios(cases):
        emit(ratio)
        print(f"ours (compile {ratio['compile']}) / {ratio['against']}: tokens/s x{ratio['tokens_per_s']}, peak memory x{ratio['peak_gib']}")
    return 0 if cases and all("error" not in case for case in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
