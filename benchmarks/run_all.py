"""Run the benchmark suite on one GPU and print every figure against its target.

    python benchmarks/run_all.py                       # the suite: every target of issue 7, about 8 minutes on an H200
    python benchmarks/run_all.py --groups lora_8b qlora train_variants lora_eager lora_eager_loss   # the other cases
    python benchmarks/run_all.py --groups quantized   # bitsandbytes inference (carry bitsandbytes in a call of its own)

Each group is one script in its own process (so one crash or OOM does not take the rest down); their JSON lines
are collected into `--out`/results.jsonl, the scripts' own output into `--out`/<group>.log, and the summary table
(figure, ours, reference, target, met) is printed last. QLoRA needs bitsandbytes; serving needs starlette and uvicorn.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent

GROUPS: Dict[str, List[str]] = {
    "train": ["train_throughput.py", "--harness", "loop", "--iters", "6"],
    "train_floor": ["train_floor.py"],
    "train_variants": ["train_throughput.py", "--harness", "step", "--precision", "bf16-mixed", "--compile", "no", "--iters", "6"],
    "lora": ["lora_throughput.py", "--cases", "Llama-3.2-1B:8", "--compile", "yes", "--qlora_model", "", "--iters", "4"],
    "lora_eager_loss": ["lora_throughput.py", "--cases", "Llama-3.2-1B:8", "--compile", "yes", "--loss", "eager", "--qlora_model", "", "--iters", "4"],
    "lora_8b": ["lora_throughput.py", "--cases", "Llama-3.1-8B:2", "--compile", "yes", "--qlora_model", "", "--iters", "4"],
    "lora_eager": ["lora_throughput.py", "--cases", "Llama-3.2-1B:8", "--compile", "no", "--qlora_model", "", "--iters", "4"],
    "qlora": ["lora_throughput.py", "--cases", "--qlora_model", "Llama-3.1-8B", "--qlora_micro_batch", "2", "--iters", "4"],
    "decode": ["decode_throughput.py", "--model", "Llama-3.2-1B", "Llama-3.1-8B", "--repeats", "1", "--compiles", "2"],
    "decode_check": ["decode_throughput.py", "--model", "Llama-3.2-1B", "--dtype", "float32", "--new", "64", "--repeats", "1", "--step", "compiled"],
    "quantized": ["quantized_check.py"],
    "serve": ["serve_throughput.py", "--model", "Llama-3.2-1B", "--clients", "1", "8", "64", "256", "--seconds", "8"],
}
SUITE = ["decode", "train", "train_floor", "lora", "decode_check", "serve"]  # the targets and the pretraining floor: about 8 minutes, within one 10-minute device call


def pick(results: List[Dict], **match) -> Optional[Dict]:
    for case in results:
        if all(case.get(k) == v for k, v in match.items()):
            return case
    return None


def row(figure: str, case: Optional[Dict], key: str, reference: str, target: Optional[float], unit: str = "",
        lower_is_better: bool = False, extra: Callable[[Dict], str] = lambda c: "") -> List[str]:
    if case is None or key not in case:
        return [figure, "not measured", reference, "" if target is None else f"{target:,g}{unit}", ""]
    value = case[key]
    met = "" if target is None else ("yes" if (value <= target if lower_is_better else value >= target) else "no")
    note = extra(case)
    shown = f"{value:,}" if isinstance(value, (int, float)) else str(value)
    return [figure, f"{shown}{unit}" + (f" ({note})" if note else ""), reference, "" if target is None else f"{target:,g}{unit}", met]


def summary(results: List[Dict]) -> List[List[str]]:
    rows = [
        row("pretrain tiny-llama-1.1b 16x2048, `litgpt pretrain` defaults", pick(results, bench="train_throughput", harness="loop"),
            "tokens_per_s", "72.0k (bf16-mixed + compile)", 94_000, extra=lambda c: f"{c['mfu_989']:.1%} MFU of 989, {c['peak_gib']} GiB"),
        row("pretrain ceiling: the step's matmuls + attention + AdamW, and the least elementwise traffic", pick(results, bench="train_floor"),
            "tokens_per_s", "", 94_000, extra=lambda c: f"floor {c['floor_ms']} ms against the step's {c['step_ms']} ms; 94k leaves "
            f"{c['target_leaves_for_traffic_ms']} ms for traffic that needs {c['traffic_needs_ms']} ms"),
        row("pretrain, bare step, eager bf16-mixed", pick(results, bench="train_throughput", harness="step", compile=False),
            "tokens_per_s", "49.2k", None),
        row("LoRA r=8 all linear, Llama-3.2-1B 8x2048, compiled", pick(results, bench="lora_throughput", model="Llama-3.2-1B", compile=True),
            "tokens_per_s", "51.6k, 45.7 GiB", 77_000, extra=lambda c: f"{c.get('peak_gib')} GiB"),
        row("LoRA peak memory, Llama-3.2-1B, compiled", pick(results, bench="lora_throughput", model="Llama-3.2-1B", compile=True),
            "peak_gib", "45.7 GiB", 45.7, " GiB", lower_is_better=True),
        row("LoRA Llama-3.2-1B, compiled layers + eager loss", pick(results, bench="lora_throughput", model="Llama-3.2-1B", compile=True, loss="eager"),
            "tokens_per_s", "51.6k, 45.7 GiB", 77_000, extra=lambda c: f"{c.get('peak_gib')} GiB"),
        row("LoRA peak memory, compiled layers + eager loss", pick(results, bench="lora_throughput", model="Llama-3.2-1B", compile=True, loss="eager"),
            "peak_gib", "45.7 GiB", 45.7, " GiB", lower_is_better=True),
        row("LoRA r=8, Llama-3.2-1B, eager", pick(results, bench="lora_throughput", model="Llama-3.2-1B", compile=False, quantize="none"),
            "tokens_per_s", "51.6k", None, extra=lambda c: f"{c.get('peak_gib')} GiB"),
        row("LoRA r=8, Llama-3.1-8B 2x2048, compiled", pick(results, bench="lora_throughput", model="Llama-3.1-8B", quantize="none"),
            "tokens_per_s", "", None, extra=lambda c: f"{c.get('peak_gib')} GiB"),
        row("QLoRA nf4, Llama-3.1-8B 2x2048", pick(results, bench="lora_throughput", quantize="nf4"),
            "tokens_per_s", "", None, extra=lambda c: f"{c.get('peak_gib')} GiB"),
    ]
    for model, eager_ref, compiled_target, compiled_ref in (("Llama-3.2-1B", 66.5, 1000, "HF 430, LitGPT patched 652"),
                                                            ("Llama-3.1-8B", 38.1, 240, "HF 130, LitGPT patched 186")):
        checks = lambda c: f"greedy = eager {c['greedy_tokens_equal_to_eager']}, logits diff {c['first_step_logits_max_diff']}"
        rows.append(row(f"decode {model} batch 1, eager step", pick(results, bench="decode_throughput", model=model, step="eager", dtype="bfloat16"),
                        "tokens_per_s", f"{eager_ref} (LitGPT eager)", 2 * eager_ref))
        rows.append(row(f"decode {model}, CUDA graphs (default, no compile)", pick(results, bench="decode_throughput", model=model, step="graphs", dtype="bfloat16"),
                        "tokens_per_s", f"{eager_ref} (LitGPT eager)", 2 * eager_ref, extra=checks))
        per_compile = lambda c: f"median of compilations {c['tokens_per_s_per_compile']}, " if "tokens_per_s_per_compile" in c else ""
        rows.append(row(f"decode {model}, --compile", pick(results, bench="decode_throughput", model=model, step="compiled", dtype="bfloat16"),
                        "tokens_per_s", compiled_ref, compiled_target, extra=lambda c: per_compile(c) + checks(c)))
        rows.append(row(f"time to first token {model}, --compile", pick(results, bench="decode_throughput", model=model, step="compiled", dtype="bfloat16"),
                        "ttft_ms", "2.8 / 7.6 ms (LitGPT patched)", 8.0 if "8B" in model else None, " ms", lower_is_better=True))
    for case in results:
        if case.get("bench") == "decode_throughput" and case.get("dtype") == "float32" and case.get("step") != "eager":
            rows.append(row(f"greedy check, {case['model']} float32, {case['step']} vs eager", case, "greedy_tokens_equal_to_eager", "", None,
                            extra=lambda c: f"first-step logits max diff {c['first_step_logits_max_diff']}"))
    for case in results:
        if case.get("bench") == "quantized_check" and case.get("mode") != "bf16":
            rows.append(row(f"quantized {case['model']} {case['mode']}: logits cosine to bf16 (min)", case, "logits_cosine_min", "", None,
                            extra=lambda c: f"top-1 agrees {c['top1_agree']:.1%}, greedy equal for {c['greedy_equal_prefix']} tokens, "
                            f"weights {c['weights_gib']} GiB"))
    speedup = pick(results, bench="serve_speedup")
    rows.append(row("serve Llama-3.2-1B, 64 clients / one-at-a-time", speedup, "ratio", "", 5.0, "x"))
    for case in results:
        if case.get("bench") == "serve_throughput":
            rows.append(row(f"serve, {case.get('clients')} clients, max_batch_size {case.get('max_batch_size')}", case, "tokens_per_s", "", None,
                            extra=lambda c: f"{c.get('requests_per_s')} req/s, p50 {c.get('p50_ms')} ms, p99 {c.get('p99_ms')} ms"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=SUITE, choices=list(GROUPS))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", HERE / "out")))
    parser.add_argument("--timeout", type=float, nargs="+", default=[900], help="seconds per group (one value, or one per group)")
    parser.add_argument("--budget", type=float, default=570, help="seconds for all groups: a group gets at most what is left, "
                        "and is skipped when under 30 s are (a device call is limited to 600 s)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: List[Dict] = []
    began = time.time()
    for i, group in enumerate(args.groups):
        start = time.time()
        left = args.budget - (start - began)
        if left < 30:
            print(f"== {group}: skipped, {left:.0f} s of the {args.budget:.0f} s budget left", flush=True)
            continue
        timeout = min(left, args.timeout[min(i, len(args.timeout) - 1)])
        command = [sys.executable, str(HERE / GROUPS[group][0]), *GROUPS[group][1:]]
        print(f"== {group}: {' '.join(command[1:])}", flush=True)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
            output, status = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as error:
            text = lambda part: part.decode(errors="replace") if isinstance(part, bytes) else (part or "")
            output, status = text(error.stdout) + text(error.stderr), "timeout"
        (args.out / f"{group}.log").write_text(output)
        for line in output.splitlines():
            if line.startswith("{"):
                try:
                    case = json.loads(line)
                except json.JSONDecodeError:
                    continue
                case["group"] = group
                results.append(case)
                print(line, flush=True)
                with open(args.out / "results.jsonl", "a") as f:  # as it comes, in case the call is cut off
                    f.write(json.dumps(case) + "\n")
        print(f"== {group}: exit {status} after {time.time() - start:.0f} s", flush=True)
    print("figure | ours | reference | target | met")
    for r in summary(results):
        if r[1] != "not measured":
            print(" | ".join(r))


if __name__ == "__main__":
    main()
