"""benchmarks/sampling_step.py runs on the CPU (its GPU figures are in benchmarks/RESULTS.md): every way of sampling
gets a row per row count, and the two-stage top-k gives topk's values (the script checks that itself)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sampling_step_benchmark_prints_every_way_per_row_count():
    command = [sys.executable, str(ROOT / "benchmarks" / "sampling_step.py"), "--device", "cpu", "--rows", "1", "3",
               "--vocab", "3000", "--iters", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    cases = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    ways = {"argmax", "sample_with", "topk", "two-stage topk", "sampling tail"}
    assert {(c["rows"], c["way"]) for c in cases} == {(rows, way) for rows in (1, 3) for way in ways}
    assert all(c["width"] == 64 and c["eager_us"] > 0 for c in cases)  # top_k 50 looks at 64 tokens
    assert "rows | way | width | eager_us | graph_us" in result.stdout
