"""Shared by the benchmark scripts: device ceilings, a CUDA-event timer, the output format, a command runner and a
random checkpoint folder."""

import json
import os
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

CORPUS = Path(__file__).resolve().parent.parent / "litgpt" / "data" / "corpus"  # tokenizer.json + tokenizer_config.json


def cuda_time_ms(fn: Callable[[], object], iters: int, warmup: int) -> List[float]:
    """Per-call times in ms of `fn`, measured with CUDA events after `warmup` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


def matmul_peak_tflops(n: int = 8192) -> float:
    """Measured bf16 matmul rate of this device (TFLOP/s), the ceiling MFU is reported against."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = statistics.median(cuda_time_ms(lambda: a @ b, iters=20, warmup=5))
    return 2 * n**3 / (ms / 1e3) / 1e12


def copy_bandwidth_tbs(n_bytes: int = 2 * 1024**3) -> float:
    """Measured device-to-device copy bandwidth (TB/s, bytes read + written)."""
    src = torch.empty(n_bytes // 2, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    ms = statistics.median(cuda_time_ms(lambda: dst.copy_(src), iters=20, warmup=5))
    return 2 * n_bytes / (ms / 1e3) / 1e12


def equal_prefix(tokens: List[int], reference: List[int]) -> int:
    """How many leading tokens agree with `reference` before the first difference."""
    return next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b), len(tokens))


def emit(case: Dict) -> None:
    print(json.dumps(case), flush=True)


def table(cases: List[Dict], columns: List[str]) -> None:
    print(" | ".join(columns))
    for case in cases:
        print(" | ".join(str(case.get(c, "")) for c in columns))


def run_command(command: List[str], log: Path, timeout: float, env: Optional[Dict[str, str]] = None,
                cwd: Optional[Path] = None, compile_cache: Optional[Path] = None) -> Dict[str, Any]:
    """Run `command` (in the folder `cwd` if given) with its output in the file `log`; its exit status ("timeout" past `timeout` seconds), output,
    wall seconds, and the peak resident memory of it and its children.

    With `compile_cache`, torch.compile and Triton keep their caches in that folder, new and removed afterwards, so
    the command compiles afresh as a user's first run does. Timed runs want this: on the H200, pretraining runs that
    found an earlier run's kernels in the shared cache ran about 8 steps at 545 ms instead of 425, the GPU partly
    idle (RESULTS.md, sixteenth session); most likely torch.compile's pool of compile workers, started at the first
    compilation, was still starting up beside those steps."""
    if compile_cache is not None:
        env = dict(os.environ if env is None else env, TORCHINDUCTOR_CACHE_DIR=str(compile_cache), TRITON_CACHE_DIR=str(compile_cache / "triton"))
    start = time.time()
    try:
        with open(log, "w") as f:
            if compile_cache is not None:
                f.write(f"(compile cache: {compile_cache}, new, removed after the run)\n")
                f.flush()
            # its own process group (not session: whatever ends this script's session still ends it), so that a
            # timeout or an interruption also ends the processes it started, one per device
            child = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd, process_group=0)
            timed_out = False
            try:
                while True:
                    pid, code, rusage = os.wait4(child.pid, os.WNOHANG)  # the rusage of this child and its children
                    if pid:
                        break
                    if not timed_out and time.time() - start > timeout:
                        os.killpg(child.pid, signal.SIGKILL)
                        timed_out = True
                    time.sleep(0.5)
            except BaseException:
                os.killpg(child.pid, signal.SIGKILL)
                raise
            child.returncode = os.waitstatus_to_exitcode(code)  # reaped above: keeps Popen from waiting again
    finally:
        if compile_cache is not None:
            shutil.rmtree(compile_cache, ignore_errors=True)
    status = "timeout" if timed_out else child.returncode
    output = Path(log).read_text(errors="replace")
    peak_rss_gib = round(rusage.ru_maxrss * 1024 / 2**30, 2)  # Linux counts ru_maxrss in KiB
    return dict(status=status, output=output, seconds=round(time.time() - start, 1), peak_rss_gib=peak_rss_gib)


def write_random_checkpoint(folder: Path, config: Any, device: str, precision: str, seed: int,
                            edit: Optional[Callable[[Any], None]] = None) -> None:
    """A checkpoint folder of the litgpt `config`: lit_model.pth (random weights in `precision`'s dtype, changed by
    `edit(model)` under no_grad first if given), model_config.yaml, and the byte-level BPE tokenizer of
    litgpt/data/corpus/ (2,048 tokens, `<|endoftext|>` its EOS), which the model's vocabulary must hold."""
    from litgpt.checkpoint import precision_dtype, save_state_dict_atomic
    from litgpt.model import GPT
    from litgpt.tokenizer import Tokenizer

    vocab = Tokenizer(CORPUS).vocab_size
    if config.padded_vocab_size < vocab:
        raise ValueError(f"{config.name}'s vocabulary ({config.padded_vocab_size}) is smaller than the tokenizer's ({vocab})")
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    with torch.device(device):
        model = GPT(config)
    model = model.to(precision_dtype(precision, torch.device(device)))
    if edit is not None:
        with torch.no_grad():
            edit(model)
    save_state_dict_atomic({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / "lit_model.pth")
    del model
    if device == "cuda":
        torch.cuda.empty_cache()  # leave the GPU to the command
    config.save(folder / "model_config.yaml")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(CORPUS / name, folder / name)


KINDS = (  # kernel name fragments, by kind, first match wins
    ("attention", ("flash", "fmha", "attention", "sdpa", "cudnn")),
    # float8 GEMMs (torch._scaled_mm) are cuBLASLt's sm90_xmma_gemm_e4m3... / nvjet_qqtst_..., PyTorch's row-wise
    # CUTLASS kernel (cutlass::device_kernel<...enable_3x_kernel_for_sm9x<cutlass::gemm...>) or inductor's Triton
    # template for _scaled_mm: all matmuls, matched before "triton"
    ("matmul", ("gemm", "gemv", "cutlass", "xmma", "nvjet", "cublas", "splitk", "scaled_mm", "f8f8bf16")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("liger (fused kernels)", ("_rms_norm_forward", "_rms_norm_backward", "_swiglu_forward", "_swiglu_backward", "_triton_rope")),
    ("triton (fused by inductor)", ("triton",)),
    ("copy / fill", ("memcpy", "memset", "copy", "fill")),
)


def kernel_kind(name: str) -> str:
    lowered = name.lower()
    return next((kind for kind, parts in KINDS if any(p in lowered for p in parts)), "other")


def profile_kernels(fn: Callable[[], object], calls: int, rows: int = 25, label: str = "") -> Dict[str, float]:
    """Run `fn` `calls` times under torch.profiler; print GPU time per call by kernel kind and the longest kernels.

    Returns the GPU time per call by kind, in µs.
    """
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    kernels: Dict[str, List[float]] = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            entry = kernels.setdefault(event.name, [0, 0.0])
            entry[0] += 1
            entry[1] += event.device_time_total
    total = sum(us for _, us in kernels.values()) or 1.0
    by_kind: Dict[str, float] = {}
    for name, (_, us) in kernels.items():
        kind = kernel_kind(name)
        by_kind[kind] = by_kind.get(kind, 0.0) + us / calls
    count = sum(n for n, _ in kernels.values()) / calls
    print(f"{label}: {count:.0f} kernels, {total / calls:,.0f} µs of kernel time per call")
    print("kind | µs/call | share")
    for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"{kind} | {us:,.0f} | {us * calls / total:.1%}")
    print("calls/call | µs/call | share | kernel")
    for name, (n, us) in sorted(kernels.items(), key=lambda kv: -kv[1][1])[:rows]:
        print(f"{n / calls:.1f} | {us / calls:,.1f} | {us / total:.1%} | {name[:120]}")
    return by_kind
