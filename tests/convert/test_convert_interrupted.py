"""convert_from_litgpt after a killed run and on a full disk: stale .tmp files go, a failed write is one line."""

import resource
import signal
import subprocess
import sys


def convert(checkpoint, out, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "litgpt", "convert_from_litgpt", str(checkpoint), str(out)],
                          capture_output=True, text=True, timeout=300, preexec_fn=preexec_fn)


def test_a_killed_conversion_leaves_nothing_for_the_next_run(tiny_checkpoint, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    stale = [out / "model.safetensors.tmp", out / "model-00001-of-00002.safetensors.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 4096)  # what a run killed while writing leaves
    result = convert(tiny_checkpoint, out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [p for p in out.iterdir() if p.suffix == ".tmp"]
    assert (out / "model.safetensors").stat().st_size > 4096
    for path in stale:
        assert f"Removed {path}" in result.stderr


def test_a_full_disk_is_one_line_and_leaves_no_tmp(tiny_checkpoint, tmp_path):
    def small_files():  # writes past 20 kB fail with EFBIG, as they would with ENOSPC on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    out = tmp_path / "hf"
    result = convert(tiny_checkpoint, out, preexec_fn=small_files)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"Could not write {out / 'model.safetensors'}" in errors[0], result.stderr[-2000:]
    assert not list(out.iterdir())
