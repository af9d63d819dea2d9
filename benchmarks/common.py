"""Shared by the benchmark scripts: device ceilings, a CUDA-event timer, and the output format."""

import json
import statistics
from typing import Callable, Dict, List

import torch


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


def emit(case: Dict) -> None:
    print(json.dumps(case), flush=True)


def table(cases: List[Dict], columns: List[str]) -> None:
    print(" | ".join(columns))
    for case in cases:
        print(" | ".join(str(case.get(c, "")) for c in columns))
