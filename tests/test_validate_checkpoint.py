"""`litgpt validate`: every problem of a checkpoint folder is reported, and memory is estimated."""

import pytest
import torch

from litgpt.config import Config
from litgpt.validate_checkpoint import validate


def test_a_complete_folder_passes_with_estimates(tiny_checkpoint, capsys):
    validate(tiny_checkpoint, training=True)
    out = capsys.readouterr().out
    assert "No problems found." in out
    assert "Parameters:" in out and "Full finetuning with AdamW" in out and "LoRA (r=8" in out


def test_every_problem_is_reported(tiny_checkpoint, capsys):
    state = torch.load(tiny_checkpoint / "lit_model.pth")
    state.pop("lm_head.weight")
    state["transformer.extra.weight"] = torch.zeros(1)
    state["transformer.wte.weight"] = torch.zeros(3, 32)
    torch.save(state, tiny_checkpoint / "lit_model.pth")
    (tiny_checkpoint / "tokenizer.json").unlink()

    with pytest.raises(ValueError, match="4 problem"):
        validate(tiny_checkpoint)
    out = capsys.readouterr().out
    assert "no tokenizer" in out
    assert "missing from lit_model.pth, e.g. lm_head.weight" in out
    assert "unexpected weight(s) in lit_model.pth, e.g. transformer.extra.weight" in out
    assert "transformer.wte.weight has shape [3, 32]" in out


def test_a_tokenizer_larger_than_the_embedding_is_a_problem(tiny_checkpoint, capsys):
    config = Config.from_checkpoint(tiny_checkpoint)
    small = Config(**{**config.to_dict(), "vocab_size": 100, "padded_vocab_size": 128})
    small.save(tiny_checkpoint / "model_config.yaml")
    with pytest.raises(ValueError, match="problem"):
        validate(tiny_checkpoint)
    assert "the tokenizer has 400 tokens but the model's embedding has only 128 rows" in capsys.readouterr().out


def test_bad_precision_and_missing_folder_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown precision"):
        validate(tmp_path, precision="fp8")
    with pytest.raises(FileNotFoundError, match="No checkpoint folder at"):
        validate(tmp_path / "nope")
