"""benchmarks/pretrain_scaling.py --tiny --reference: this project's `litgpt pretrain` and LitGPT 0.5.13's own, each in a
child process on the CPU, from one initial checkpoint on the same ZipfTokens blocks with the same flags. LitGPT's
source tree is extracted from the git mirror (benchmarks/reference.py): skipped where there is none (as in CI).
TORCH_COMPILE_DISABLE keeps LitGPT's unconditional torch.compile from compiling on the CPU (the plumbing, not speed)."""

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


@pytest.mark.skipif(not (reference.DEFAULT_MIRROR / "HEAD").is_file(), reason=f"no git mirror of LitGPT at {reference.DEFAULT_MIRROR}")
def test_pretrain_tiny_beside_litgpt(tmp_path):
    tree = reference.prepare(tmp_path / "ref", reference.DEFAULT_MIRROR)
    env = {**{k: v for k, v in os.environ.items() if k != "OUT"}, "TORCH_COMPILE_DISABLE": "1"}
    command = [sys.executable, str(ROOT / "benchmarks" / "pretrain_scaling.py"), "--tiny", "--cpu", "--devices", "1", "--resume",
               "--steps", "3", "--skip", "1", "--compare_steps", "3", "--reference", str(tree), "--out", str(tmp_path / "runs")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cases = {c["run"]: c for c in map(json.loads, filter(lambda line: line.startswith("{"), result.stdout.splitlines()))
             if c["bench"] == "pretrain_scaling"}
    ours, theirs = cases["this project"], cases["LitGPT 0.5.13"]
    for case in (ours, theirs):  # 3 steps of 8 x 128 (4 micro-batches of 2), the first left out of the timing
        assert "error" not in case and (case["steps"], case["steps_timed"]) == (3, 2) and case["tokens_per_s"] > 0, case
    # one initial checkpoint, the same blocks: the first step's loss is the same computation in both
    assert abs(ours["first_losses"][0] - theirs["first_losses"][0]) < 1e-4, (ours, theirs)
    assert theirs["ours_over_tokens_per_s"] == round(ours["tokens_per_s"] / theirs["tokens_per_s"], 3), theirs
    # LitGPT's figure is its own CSV log's: a row per optimizer step, the median step time of rows 2 and 3 (x4 micro-batches)
    run = tmp_path / "runs" / "litgpt-0.5.13"
    with open(next(run.glob("logs/csv/version_*/metrics.csv")), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["loss"]]
    assert [int(r["tokens"]) for r in rows] == [1024, 2048, 3072], rows  # it ran 3 steps, not its default 3e12 tokens
    # the lr of each step is LitGPT's: warmup and cosine decay over its micro-batches, a step taking its last one's
    with open(next((tmp_path / "runs" / "devices-1").glob("logs/csv/version_*/metrics.csv")), newline="") as f:
        ours_lr = [float(r["learning_rate"]) for r in csv.DictReader(f) if r["loss"]]
    assert ours_lr == pytest.approx([float(r["learning_rate"]) for r in rows], rel=1e-12), (ours_lr, rows)
    assert theirs["tokens_per_s"] == round(8 * 128 / statistics.median(4 * float(r["iter_time"]) for r in rows[1:])), (theirs, rows)
    assert "'initial_checkpoint_dir': PosixPath(" in (run / "run.log").read_text()  # LitGPT prints its hyperparameters so
    ran = (run / "command.txt").read_text().split()
    assert ran[1:5] == ["-m", "litgpt", "pretrain", "tiny"] and "--compile" not in ran, ran
    assert ran[ran.index("--data.val_blocks") + 1] == "4" and ran[ran.index("--train.max_tokens") + 1] == str(3 * 8 * 128), ran
    assert "ours (1 device) / LitGPT 0.5.13: tokens/s x" in result.stdout
