"""--resume of a step folder whose lit_model.pth is hostile or belongs to another model: one line, nothing run."""

import torch
import yaml
from cli_checks import WritesMarker, litgpt, one_line_error
from test_resume_safety import cli_config, copy_run, trained  # noqa: F401 (a fixture)


def test_a_pickle_in_the_training_state_is_refused_not_run(tmp_path, text_dir, trained):  # noqa: F811
    out = copy_run(trained, tmp_path)
    marker = tmp_path / "pwned"
    weights = out / "step-00000004" / "lit_model.pth"
    state = torch.load(weights, weights_only=True)
    torch.save({**state, "extra": WritesMarker(str(marker))}, weights, pickle_protocol=2)
    result = litgpt("pretrain", "--config", str(cli_config(tmp_path, text_dir, out, max_steps=6)), "--resume", "auto")
    line = one_line_error(result, f"{weights} holds more than tensors and plain values")
    assert "refusing to unpickle" in line
    assert not marker.exists()


def test_resuming_with_another_model_config_names_the_tensor(tmp_path, text_dir, trained):  # noqa: F811
    out = copy_run(trained, tmp_path)
    config = cli_config(tmp_path, text_dir, out, max_steps=6)
    values = yaml.safe_load(config.read_text())
    values["model_config"] = {**values["model_config"], "intermediate_size": 96}
    config.write_text(yaml.safe_dump(values))
    result = litgpt("pretrain", "--config", str(config), "--resume", "auto")
    line = one_line_error(result, "does not fit this run's model")
    assert "mlp.fc_1.weight is [64, 32] there but [96, 32]" in line

