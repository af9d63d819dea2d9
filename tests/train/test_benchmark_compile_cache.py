"""benchmarks/common.run_command(compile_cache=...): the timed command gets torch.compile's and Triton's caches in a
new folder of its own, which is gone afterwards, so every timed run compiles afresh (RESULTS.md, sixteenth session:
a run that found an earlier run's kernels ran its first steps host-bound)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import run_command  # noqa: E402

# the child reports the folders it was given and writes into them, as inductor and Triton do
CHILD = """import os, pathlib
for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
    folder = pathlib.Path(os.environ[name]); folder.mkdir(parents=True, exist_ok=True); (folder / "kernel").write_text("x")
    print(name, folder, sorted(os.listdir(folder)))
print("MINE", os.environ.get("MINE"))
"""


def test_the_command_compiles_into_a_new_cache_that_is_removed_afterwards(tmp_path):
    cache = tmp_path / "run" / "compile_cache"
    (tmp_path / "run").mkdir()
    env = {**os.environ, "MINE": "kept", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "shared")}
    run = run_command([sys.executable, "-c", CHILD], tmp_path / "run" / "run.log", 60, env, compile_cache=cache)
    assert run["status"] == 0, run["output"]
    lines = run["output"].splitlines()
    assert lines[0] == f"(compile cache: {cache}, new, removed after the run)"
    assert f"TORCHINDUCTOR_CACHE_DIR {cache} ['kernel']" in lines  # not the shared one from the environment
    assert f"TRITON_CACHE_DIR {cache / 'triton'} ['kernel']" in lines
    assert "MINE kept" in lines  # the rest of the given environment stays
    assert not cache.exists() and not (tmp_path / "shared").exists()


def test_without_it_the_command_keeps_the_environment_s_cache(tmp_path):
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "shared"), "TRITON_CACHE_DIR": str(tmp_path / "triton")}
    run = run_command([sys.executable, "-c", CHILD], tmp_path / "run.log", 60, env)
    assert run["status"] == 0 and f"TORCHINDUCTOR_CACHE_DIR {tmp_path / 'shared'} ['kernel']" in run["output"], run["output"]
    assert (tmp_path / "shared" / "kernel").is_file()  # nothing removed


def test_pretrain_scaling_compiles_afresh_unless_told_to_share(tmp_path):
    """benchmarks/pretrain_scaling.py: by default a run gets a new cache (named at the top of its log, gone after it);
    --compile_cache shared leaves the environment's cache to it, as a rerun finds it."""
    import subprocess

    env = {**{k: v for k, v in os.environ.items() if k != "OUT"}, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "shared")}
    for mode in ("fresh", "shared"):
        out = tmp_path / mode
        command = [sys.executable, str(ROOT / "benchmarks" / "pretrain_scaling.py"), "--tiny", "--cpu", "--devices", "1", "--resume",
                   "--steps", "3", "--skip", "1", "--compare_steps", "2", "--compile_cache", mode, "--out", str(out)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        first = (out / "devices-1" / "run.log").read_text().splitlines()[0]
        cache = out / "devices-1" / "compile_cache"
        if mode == "fresh":
            assert first == f"(compile cache: {cache}, new, removed after the run)", first
        else:
            assert "compile cache" not in first, first
        assert not cache.exists()
