"""benchmarks/batcher_profile.py runs on the CPU (its GPU figures are in benchmarks/RESULTS.md): a case per reuse
setting, and with a shared system prompt the reusing case copies prompt tokens where the other computes them all."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_batcher_profile_compares_copying_a_shared_prefix_with_computing_it():
    command = [sys.executable, str(ROOT / "benchmarks" / "batcher_profile.py"), "--model", "pythia-14m", "--device", "cpu",
               "--clients", "6", "--max_batch_size", "4", "--seconds", "2", "--shared_prefix", "80", "--prompt_tokens", "8",
               "--new_tokens", "3", "--modes", "greedy", "--reuse", "true", "false", "--phases"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    cases = {c["reuse"]: c for c in (json.loads(line) for line in result.stdout.splitlines() if line.startswith("{"))}
    assert set(cases) == {True, False} and all(c["finished"] > 0 and c["tokens_per_s"] > 0 for c in cases.values())
    assert cases[True]["reused_per_s"] > 0 and cases[False]["reused_per_s"] == 0
    assert "phases (s, device synced)" in result.stdout
