"""`litgpt.validate_checkpoint`, `litgpt.CheckpointValidationResult` and `litgpt.estimate_model_memory` (LitGPT's
exports), on a tiny checkpoint."""

import pkgutil
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch

import litgpt
from litgpt import CheckpointValidationResult, Config, GPT, estimate_model_memory, validate_checkpoint

REPO = Path(__file__).resolve().parents[1]


def meta_model(config: Config) -> GPT:
    with torch.device("meta"):
        return GPT(config)


def test_exported_by_import_litgpt_without_torch():
    for name in ("CheckpointValidationResult", "validate_checkpoint", "estimate_model_memory"):
        assert name in litgpt.__all__
    code = "import sys, litgpt; assert 'torch' not in sys.modules; from litgpt import validate_checkpoint; print(validate_checkpoint.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "litgpt.preflight"
    assert [f.name for f in fields(CheckpointValidationResult)] == ["is_valid", "missing_keys", "unexpected_keys", "shape_mismatches", "errors"]


def test_a_matching_checkpoint_is_valid(tiny_checkpoint, capsys):
    config = Config.from_checkpoint(tiny_checkpoint)
    result = validate_checkpoint(tiny_checkpoint / "lit_model.pth", meta_model(config))
    assert result == CheckpointValidationResult(True, [], [], [], [])
    assert capsys.readouterr().err.strip() == result.summary() == "Checkpoint validation passed."
    state = torch.load(tiny_checkpoint / "lit_model.pth", weights_only=True)
    torch.save({"model": state, "step": 3}, tiny_checkpoint / "training.pth")  # a training checkpoint's layout
    assert validate_checkpoint(tiny_checkpoint / "training.pth", meta_model(config), verbose=False).is_valid


def test_what_does_not_fit_is_listed(tiny_checkpoint, tmp_path, capsys):
    config = Config.from_checkpoint(tiny_checkpoint)
    path = tiny_checkpoint / "lit_model.pth"
    fewer_layers = validate_checkpoint(path, meta_model(replace(config, n_layer=1)), verbose=False)
    assert not fewer_layers.is_valid and fewer_layers.unexpected_keys and not fewer_layers.missing_keys
    assert all(key.startswith("transformer.h.1.") for key in fewer_layers.unexpected_keys)
    more_layers = validate_checkpoint(path, meta_model(replace(config, n_layer=3)), verbose=False)
    assert more_layers.missing_keys and all(key.startswith("transformer.h.2.") for key in more_layers.missing_keys)
    wider = validate_checkpoint(path, meta_model(replace(config, vocab_size=500, padded_vocab_size=None)), verbose=True)
    assert wider.shape_mismatches == ["lm_head.weight: model=(512, 32), checkpoint=(448, 32)",
                                      "transformer.wte.weight: model=(512, 32), checkpoint=(448, 32)"]
    assert capsys.readouterr().err.startswith("Checkpoint validation failed:\n  Shape mismatches (2):\n    lm_head.weight")
    missing = validate_checkpoint(tmp_path / "none.pth", meta_model(config), verbose=False)
    assert not missing.is_valid and missing.errors == [f"Checkpoint file not found: {tmp_path / 'none.pth'}"]


def test_a_file_that_needs_unpickling_is_an_error_not_run(tiny_checkpoint, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"transformer.wte.weight": torch.zeros(1), "x": Payload()}, tmp_path / "evil.pth")
    result = validate_checkpoint(tmp_path / "evil.pth", meta_model(Config.from_checkpoint(tiny_checkpoint)), verbose=False)
    assert not result.is_valid and "refusing to unpickle" in result.errors[0] and not marker.exists()
    assert "Errors: " in result.summary()


def test_estimate_model_memory():
    config = Config.from_name("pythia-14m")
    count = sum(p.numel() for p in meta_model(config).parameters())
    estimate = estimate_model_memory(config)
    assert set(estimate) == {"param_count", "param_memory_gb", "estimated_total_gb", "available_gpu_memory_gb", "fits_in_memory"}
    assert estimate["param_count"] == count and estimate["param_memory_gb"] == round(count * 4 / 1024**3, 2)
    big = Config.from_name("Llama-3.1-8B")
    fp32, bf16 = estimate_model_memory(big, torch.float32), estimate_model_memory(big, "bfloat16")
    assert bf16["param_memory_gb"] == pytest.approx(fp32["param_memory_gb"] / 2, abs=0.01) and 14 < bf16["param_memory_gb"] < 16
    assert estimate_model_memory(big, "bfloat16", training=True)["estimated_total_gb"] == pytest.approx(4 * bf16["param_memory_gb"], abs=0.03)
    if not torch.cuda.is_available():
        assert estimate["available_gpu_memory_gb"] is None and estimate["fits_in_memory"] is None
    with pytest.raises(ValueError, match="dtype 'fp16' is not one of float32, float16, bfloat16"):
        estimate_model_memory(config, "fp16")


def test_no_module_shadows_a_public_name():
    # a module named like an export (the validate command's was litgpt/validate_checkpoint.py) replaces the export
    # with itself once anything imports it
    modules = {m.name for m in pkgutil.iter_modules(litgpt.__path__)}
    assert not modules & set(litgpt.__all__)
