"""Reading a damaged or hostile lit_model.pth through the real CLI: one line naming the file, never a traceback,
never code run from the file."""

import pickle

import pytest
import torch
import yaml

from cli_checks import WritesMarker, litgpt, one_line_error


@pytest.mark.parametrize("command", ["generate", "convert_from_litgpt"])
def test_a_pickle_in_lit_model_pth_is_refused_not_run(tiny_checkpoint, tmp_path, command):
    marker = tmp_path / "pwned"
    weights = torch.load(tiny_checkpoint / "lit_model.pth", weights_only=True)
    torch.save({**weights, "extra": WritesMarker(str(marker))}, tiny_checkpoint / "lit_model.pth", pickle_protocol=2)
    args = {"generate": ["--prompt", "hi"], "convert_from_litgpt": [str(tmp_path / "hf")]}[command]
    line = one_line_error(litgpt(command, str(tiny_checkpoint), *args), "refusing to unpickle")
    assert "lit_model.pth" in line
    assert not marker.exists()


@pytest.mark.parametrize("command", ["generate", "validate"])
def test_a_truncated_lit_model_pth_is_one_line(tiny_checkpoint, command):
    weights = tiny_checkpoint / "lit_model.pth"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = litgpt(command, str(tiny_checkpoint), *(["--prompt", "hi"] if command == "generate" else []))
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert f"{weights} cannot be read (truncated or corrupt?)" in result.stderr + result.stdout


def test_validate_names_an_empty_lit_model_pth(tiny_checkpoint):
    (tiny_checkpoint / "lit_model.pth").write_bytes(b"")
    result = litgpt("validate", str(tiny_checkpoint))
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert f"{tiny_checkpoint / 'lit_model.pth'} is empty (0 bytes)" in result.stderr + result.stdout


def test_convert_names_a_tensor_that_does_not_fit_the_config(tiny_checkpoint, tmp_path):
    config = yaml.safe_load((tiny_checkpoint / "model_config.yaml").read_text())
    config["intermediate_size"] = 96
    (tiny_checkpoint / "model_config.yaml").write_text(yaml.safe_dump(config))
    line = one_line_error(litgpt("convert_from_litgpt", str(tiny_checkpoint), str(tmp_path / "hf")), "fc_1.weight")
    assert "(64, 32)" in line and "96, 32" in line
    assert not (tmp_path / "hf").exists() or not list((tmp_path / "hf").iterdir())


def test_pickle_protocol_2_is_what_torch_refuses_by_name(tiny_checkpoint, tmp_path):
    """The refusal names the callable the pickle would import, so a user sees what the file tried."""
    path = tmp_path / "x.pt"
    with open(path, "wb") as f:
        pickle.dump({"a": WritesMarker(str(tmp_path / "m"))}, f, protocol=2)
    from litgpt.checkpoint import CheckpointError, read_plain

    with pytest.raises(CheckpointError, match=r"it names (io|builtins)\.open"):
        read_plain(path)
    assert not (tmp_path / "m").exists()
