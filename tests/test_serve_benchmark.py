"""benchmarks/serve_throughput.py runs on the CPU (its GPU figures are in benchmarks/RESULTS.md): a real `litgpt serve`
on a tiny checkpoint, clients that get every reply whole and exact, and how busy the server's two processes were."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_serve_throughput_measures_a_real_server_and_its_processes():
    command = [sys.executable, str(ROOT / "benchmarks" / "serve_throughput.py"), "--tiny", "--device", "cpu", "--clients", "2",
               "--requests", "3", "--new_tokens", "64", "--max_batch_size", "2", "--modes", "sampled", "--no_baseline"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (case,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert case["errors"] == 0 and case["requests"] == 6 and case["exact"], case
    assert case["tokens_per_s"] > 0 and case["p99_ms"] >= case["p50_ms"] > 0
    # the token loop runs in a process of its own (the default engine), which did the work: counted in the kernel's
    # clock ticks of 10 ms, the run is long enough for the engine to take several (the HTTP side's few may round to 0)
    assert case["engine_cpu_pct"] > 0 and case["http_cpu_pct"] >= 0, case
