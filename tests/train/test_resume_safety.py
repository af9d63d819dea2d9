"""Resuming as a hostile or unlucky user meets it: pickles in a checkpoint, damaged or partial folders, a full
disk, Ctrl-C, and kills from outside at random moments. Every failure is one line and exits non-zero."""

import os
import pickle
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from cli_checks import WritesMarker, litgpt, one_line_error
from train_helpers import CORPUS, RUNNER, TINY_MODEL, tiny_spec


def cli_config(tmp_path: Path, text_dir: Path, out: Path, **train) -> Path:
    config = {
        "model_config": TINY_MODEL,
        "data": {"class_path": "TextFiles", "init_args": {"train_data_path": str(text_dir), "num_workers": 0}},
        "train": {"global_batch_size": 8, "micro_batch_size": 4, "max_seq_length": 32, "max_steps": 4,
                  "log_interval": 1, "save_interval": 2, "lr_warmup_steps": 2, **train},
        "eval": {"interval": 100, "max_iters": 1, "final_validation": False},
        "out_dir": str(out), "tokenizer_dir": str(CORPUS), "logger_name": "csv", "precision": "32-true",
    }
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, text_dir) -> Path:
    """A 4-step run with checkpoints at steps 2 and 4 (copied by each test before it damages anything)."""
    tmp = tmp_path_factory.mktemp("trained")
    result = litgpt("pretrain", "--config", str(cli_config(tmp, text_dir, tmp / "out")))
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "out"


def copy_run(trained: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    return out


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_in_rng_file_is_refused_not_run(tmp_path, text_dir, trained, protocol):
    out = copy_run(trained, tmp_path)
    marker = tmp_path / "pwned"
    with open(out / "step-00000004" / "rng-0.pt", "wb") as f:
        pickle.dump({"python": WritesMarker(str(marker))}, f, protocol=protocol)
    result = litgpt("pretrain", "--config", str(cli_config(tmp_path, text_dir, out, max_steps=6)), "--resume", "auto")
    line = one_line_error(result, "refusing to unpickle")
    assert "rng-0.pt" in line and ("io.open" in line if protocol == 2 else "Python objects" in line)
    assert not marker.exists()


def test_rng_files_hold_only_tensors_and_numbers(trained):
    state = torch.load(trained / "step-00000004" / "rng-0.pt", weights_only=True)  # no allow-list needed
    assert isinstance(state["torch"], torch.Tensor) and isinstance(state["python"][1], torch.Tensor)


def test_an_rng_file_of_the_earlier_format_still_resumes(tmp_path, text_dir, trained):
    """Folders written before the states were tensors hold NumPy's state as an array: allowed, nothing else."""
    import numpy as np

    out = copy_run(trained, tmp_path)
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
               out / "step-00000004" / "rng-0.pt")
    result = litgpt("pretrain", "--config", str(cli_config(tmp_path, text_dir, out, max_steps=6)), "--resume", "auto")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_resume_auto_passes_over_a_damaged_newest_checkpoint(tmp_path, text_dir, trained, damage):
    out = copy_run(trained, tmp_path)
    weights = out / "step-00000004" / "lit_model.pth"
    with open(weights, "r+b") as f:
        f.truncate(0 if damage == "empty" else weights.stat().st_size // 2)
    result = litgpt("pretrain", "--config", str(cli_config(tmp_path, text_dir, tmp_path / "x", max_steps=6)),
                    "--resume", str(out / "step-00000004"))
    one_line_error(result, "resume from an earlier step-* folder")

    result = litgpt("pretrain", "--config", str(cli_config(tmp_path, text_dir, out, max_steps=6)), "--resume", "auto")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Skipping {out / 'step-00000004'}" in result.stdout
    assert f"Resuming from {out / 'step-00000002' / 'lit_model.pth'}" in result.stdout
    assert (out / "final" / "lit_model.pth").is_file()


def test_stale_temporary_folders_are_removed(tmp_path, text_dir, trained):
    out = copy_run(trained, tmp_path)
    stale = out / ".step-00000008.tmp"
    stale.mkdir()
    (stale / "lit_model.pth").write_bytes(b"\0" * 1000)
    result = litgpt("pretrain", "--config", str(cli_config(tmp_path, text_dir, out, max_steps=6)), "--resume", "auto")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not stale.exists() and f"Removed {stale}" in result.stdout


def test_a_full_disk_during_a_save_is_one_line_and_leaves_no_partial_folder(tmp_path, text_dir):
    def small_files():  # writes past 300 kB fail with EFBIG, as they would with ENOSPC on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    out = tmp_path / "out"
    result = litgpt("pretrain", "--config", str(cli_config(tmp_path, text_dir, out)), preexec_fn=small_files)
    one_line_error(result, f"Could not write the checkpoint {out / 'step-00000002'}")
    assert not list(out.glob(".*")) and not list(out.glob("step-*"))


@pytest.mark.parametrize("command", ["generate", "chat", "convert_from_litgpt", "finetune_lora"])
def test_an_empty_lit_model_pth_is_one_line(tmp_path, trained, command):
    import json

    folder = tmp_path / "final"
    shutil.copytree(trained / "final", folder)
    (folder / "lit_model.pth").write_bytes(b"")
    records = tmp_path / "data.json"
    records.write_text(json.dumps([{"instruction": f"Say {i}", "input": "", "output": f"{i}"} for i in range(8)]))
    args = {"generate": ["--prompt", "hi"], "chat": [], "convert_from_litgpt": [str(tmp_path / "hf")],
            "finetune_lora": ["--data", "JSON", "--data.json_path", str(records),
                          "--data.val_split_fraction", "0.25", "--out_dir", str(tmp_path / "ft")]}[command]
    one_line_error(litgpt(command, str(folder), *args), "is empty (0 bytes)")


def test_weights_that_do_not_fit_the_config_name_the_tensor(tmp_path, trained):
    folder = tmp_path / "final"
    shutil.copytree(trained / "final", folder)
    config = yaml.safe_load((folder / "model_config.yaml").read_text())
    config["intermediate_size"] = 96
    (folder / "model_config.yaml").write_text(yaml.safe_dump(config))
    line = one_line_error(litgpt("generate", str(folder), "--prompt", "hi"), "fc_1.weight")
    assert "(64, 32)" in line and "(96, 32)" in line


def test_ctrl_c_says_where_the_checkpoint_is_and_how_to_resume(tmp_path, text_dir):
    out = tmp_path / "out"
    config = cli_config(tmp_path, text_dir, out, max_steps=100_000, save_interval=2)
    process = subprocess.Popen([sys.executable, "-m", "litgpt", "pretrain", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "step-00000004").is_dir() and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert f"The last checkpoint is {out}/step-" in stderr
    assert f"continue with: litgpt pretrain --config {config} --resume auto" in stderr


def run_child(spec: dict) -> subprocess.Popen:
    root = str(Path(__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    import json

    return subprocess.Popen([sys.executable, "-u", str(RUNNER), json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)


def final_weights(out: Path) -> dict:
    return torch.load(out / "final" / "lit_model.pth", weights_only=True)["model"]


def test_sigkill_from_a_parent_at_random_moments_then_resume_is_bit_exact(tmp_path, text_dir):
    """A parent kills the training process at random moments (one inside a save: the checkpoint still sits in
    its temporary folder), the run resumes with --resume auto until done, and ends with the same weights."""
    steps = 12

    def spec(out: Path) -> dict:
        s = tiny_spec(out, text_dir, max_steps=steps, save_interval=3)
        s["eval"]["interval"] = 1000
        s["setup"]["resume"] = "auto"
        return s

    reference = tmp_path / "reference"
    child = run_child(spec(reference))
    child.communicate(timeout=300)
    assert child.returncode == 0

    for seed, moment in [(0, "random"), (1, "inside a save")]:
        out = tmp_path / f"killed-{seed}"
        # saves are held 0.3 s in their temporary folder, so that a run lasts long enough to be hit anywhere
        child = run_child({**spec(out), "slow_commit": True})
        saves = 0
        for line in child.stdout:  # the kill comes after the first checkpoint is complete, so resuming has work
            saves += line == "saving\n"
            if saves == 2:
                break
        if moment == "inside a save":
            time.sleep(0.1)
            assert list(out.glob(".step-*.tmp")), "the kill should land inside a save"
        else:
            time.sleep(random.Random(seed).uniform(0.0, 0.6))
        child.kill()
        child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL
        assert not (out / "final").exists(), "the kill came after the run had finished"
        assert (out / "step-00000003").is_dir()
        child = run_child(spec(out))
        child.communicate(timeout=300)
        assert child.returncode == 0
        a, b = final_weights(reference), final_weights(out)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"seed {seed} ({moment})"
