"""benchmarks/finetune_command.py --toy --reference: this project's `litgpt finetune_lora` and LitGPT 0.5.13's own, each
in a child process on the CPU, on the same checkpoint and data; LitGPT's source tree is extracted from the git mirror
(benchmarks/reference.py), so the test is skipped where there is none (as in CI)."""

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import reference  # noqa: E402


def run_benchmark(*flags: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    command = [sys.executable, str(ROOT / "benchmarks" / "finetune_command.py"), "--toy", "--compile", "default", *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.skipif(not (reference.DEFAULT_MIRROR / "HEAD").is_file(), reason=f"no git mirror of LitGPT at {reference.DEFAULT_MIRROR}")
def test_finetune_command_toy_beside_litgpt(tmp_path):
    tree = reference.prepare(tmp_path / "ref", reference.DEFAULT_MIRROR)
    result = run_benchmark("--reference", str(tree), "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    cases = {c["run"]: c for c in lines if c["bench"] == "finetune_command"}
    ours, theirs = cases["this project"], cases["LitGPT 0.5.13"]
    # 3 steps of 2 rows of 128 tokens: we feed and count 127 per row, LitGPT feeds and counts all 128
    assert (ours["steps"], ours["steps_timed"], ours["row_tokens"]) == (3, 2, 127), ours
    assert (theirs["steps"], theirs["steps_timed"], theirs["row_tokens"]) == (3, 2, 128), theirs
    assert ours["tokens_per_s"] > 0 and theirs["tokens_per_s"] > 0 and "error" not in theirs, (ours, theirs)
    # LitGPT's figure is its own CSV log's: rows 2 and 3 (row 1 skipped), 256 tokens each over its iter_time
    run = tmp_path / "runs" / "litgpt-0.5.13"
    with open(next(run.glob("logs/csv/version_*/metrics.csv")), newline="") as f:
        rows = {int(r["step"]): r for r in csv.DictReader(f) if r["loss"]}
    assert theirs["tokens_per_s"] == round(statistics.median(256 / float(rows[s]["iter_time"]) for s in (2, 3))), (theirs, rows)
    # the same learning rate in each optimizer step (0 in the first): LitGPT logs a step's row after its scheduler
    # stepped, so with the next step's lr; we log the lr the step used
    with open(next((tmp_path / "runs" / "compile-default").glob("logs/csv/version_*/metrics.csv")), newline="") as f:
        ours_lr = {int(r["step"]): float(r["learning_rate"]) for r in csv.DictReader(f) if r["loss"]}
    assert ours_lr[1] == 0.0 and [ours_lr[s + 1] for s in (1, 2)] == [float(rows[s]["learning_rate"]) for s in (1, 2)], (ours_lr, rows)
    log = (run / "run.log").read_text()
    assert "{'access_token': None," in log  # LitGPT's setup prints its arguments; ours does not
    ran = (run / "command.txt").read_text().split()
    assert ran[1:4] == ["-m", "litgpt", "finetune_lora"] and "--compile" not in ran, ran
    ours_ran = (tmp_path / "runs" / "compile-default" / "command.txt").read_text().split()
    assert ran == [str(run) if arg == ours_ran[6] else arg for arg in ours_ran]  # the same command but its --out_dir
    ratio = next(c for c in lines if c["bench"] == "finetune_command_ratio")
    assert ratio["tokens_per_s"] == round(ours["tokens_per_s"] / theirs["tokens_per_s"], 3), ratio
    assert "LitGPT 0.5.13 | none (no such flag) | 3 | 2 | 128 |" in result.stdout
    assert "ours (compile default) / LitGPT 0.5.13: tokens/s x" in result.stdout


def test_finetune_command_reference_missing_tree(tmp_path):
    result = run_benchmark("--reference", str(tmp_path / "absent"))
    assert result.returncode == 2 and result.stdout.count("\n") == 0, result.stdout + result.stderr
    assert result.stderr.strip() == (f"error: no LitGPT 0.5.13 tree at {tmp_path / 'absent'} (no litgpt/__main__.py): run"
                                     " `python benchmarks/reference.py prepare` where the git mirror is, and carry .ref to the device")


def test_litgpt_peak_memory_line():
    # the lines LitGPT 0.5.13 prints on CUDA after finetuning and after pretraining (GB = 1e9 bytes), and none on CPUs
    assert reference.peak_gib("| Memory Usage\n| - Memory Used               :  45.70 GB          \n---") == 42.6
    assert reference.peak_gib("| Memory Usage\n| - Memory Used   : 61.23 GB\n") == 57.0
    assert reference.peak_gib("| - Tok/sec                   :  930.85 tok/s\n") is None
