"""benchmarks/finetune_command.py --toy: the real `litgpt finetune_lora` in a child process on the CPU, its inputs
written by the script (random checkpoint, JSON records of exactly --seq tokens), its figures read back from the run."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_finetune_command_benchmark_toy(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    command = [sys.executable, str(ROOT / "benchmarks" / "finetune_command.py"), "--toy", "--compile", "default", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cases = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"bench": "finetune_command"')]
    assert len(cases) == 1, result.stdout
    case = cases[0]
    # 3 steps of 2 rows; every record is exactly 128 tokens, so every row feeds 127 (the last token is only a target)
    assert (case["compile"], case["steps"], case["steps_timed"], case["row_tokens"]) == ("default", 3, 2, 127), case
    assert "error" not in case and case["peak_gib"] is None and case["wall_s"] > 0, case  # no CUDA peak on the CPU
    # the figures are the run's own: its CSV log's steps 2 and 3 (step 1 skipped), each 254 tokens over its iter_time
    with open(next((tmp_path / "compile-default" / "logs" / "csv").glob("version_*/metrics.csv")), newline="") as f:
        rows = {int(r["step"]): r for r in csv.DictReader(f)}
    assert sorted(rows) == [1, 2, 3] and [int(rows[s]["tokens"]) for s in (1, 2, 3)] == [254, 508, 762], rows
    rates = sorted(254 / float(rows[s]["iter_time"]) for s in (2, 3))
    assert case["tokens_per_s"] == round(sum(rates) / 2), (case, rates)
    assert case["loop_tokens_per_s"] == round(float(rows[3]["throughput/tokens_per_sec"])), (case, rows[3])
    ran = (tmp_path / "compile-default" / "command.txt").read_text().split()
    assert ran[1:4] == ["-m", "litgpt", "finetune_lora"] and "--compile" not in ran, ran
    for flag, value in (("--data", "JSON"), ("--train.micro_batch_size", "2"), ("--train.max_seq_length", "128"), ("--lora_r", "8")):
        assert ran[ran.index(flag) + 1] == value, ran
    assert not (tmp_path / "compile-default" / "final").exists()  # weights deleted, logs kept
    assert "compile | steps | steps_timed" in result.stdout
