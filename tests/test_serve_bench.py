"""benchmarks/serve_throughput.py: a tiny CPU run starts both servers, measures every case and reports exact replies."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "serve_throughput.py"
CASE_FIELDS = {
    "bench", "model", "device", "precision", "server", "max_batch_size", "clients", "prompt_tokens", "new_tokens",
    "requests", "seconds", "requests_per_s", "tokens_per_s", "p50_ms", "p99_ms", "new_tokens_min", "new_tokens_max", "exact",
}


def test_tiny_cpu_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--clients", "1", "3", "--requests", "2",
        "--prompt_tokens", "16", "--new_tokens", "8", "--checkpoint_dir", str(tmp_path / "checkpoint"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    cases = [line for line in lines if line["bench"] == "serve_throughput"]
    assert [(c["server"], c["max_batch_size"], c["clients"]) for c in cases] == [
        ("batched", 3, 1), ("batched", 3, 3), ("one_at_a_time", 1, 3)
    ]
    for case in cases:
        assert CASE_FIELDS <= set(case), CASE_FIELDS - set(case)
        assert "errors" not in case
        assert case["requests"] == 2 * case["clients"]
        # every reply was counted back from its text at exactly the requested length
        assert case["exact"] is True and case["new_tokens_min"] == case["new_tokens_max"] == 8
        assert case["prompt_tokens"] == 16
        assert case["requests_per_s"] > 0 and case["tokens_per_s"] > 0 and 0 < case["p50_ms"] <= case["p99_ms"]
        assert abs(case["tokens_per_s"] - 8 * case["requests_per_s"]) < 0.01 * case["tokens_per_s"] + 1
    (speedup,) = [line for line in lines if line["bench"] == "serve_speedup"]
    assert speedup["clients"] == 3 and speedup["ratio"] > 0
    assert result.stdout.rstrip().splitlines()[-4].startswith("server | max_batch_size | clients")  # the table comes last
    assert (tmp_path / "checkpoint" / "lit_model.pth").is_file()
