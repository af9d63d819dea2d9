"""`litgpt validate`: every problem of a checkpoint folder is reported, and memory is estimated."""

import pytest
import torch

from litgpt.config import Config
from litgpt.validate import validate


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


def test_memory_is_estimated_in_float32_unless_told(tiny_checkpoint, capsys):
    """LitGPT's --dtype (float32 by default) and our --precision: one of them, or both when they agree."""
    import litgpt.__main__ as cli

    cases = [
        ([], "32-true"), (["--dtype", "bfloat16"], "bf16-true"), (["--dtype", "float16"], "16-true"),
        (["--precision", "bf16-true"], "bf16-true"), (["--dtype", "bfloat16", "--precision", "bf16-true"], "bf16-true"),
        (["--dtype", "float32", "--precision", "bf16-mixed"], "bf16-mixed"),  # mixed precision keeps float32 weights
    ]
    for flags, precision in cases:
        cli.main(["validate", str(tiny_checkpoint), *flags])
        out = capsys.readouterr().out
        assert f"Inference at {precision}: weights " in out and "No problems found." in out, flags
    n_params = int(out.split("Parameters: ")[1].split("\n")[0].replace(",", ""))
    validate(tiny_checkpoint)
    assert f"weights {n_params * 4 / 1024**3:.2f} GiB" in capsys.readouterr().out
    bad = [
        (["--dtype", "float16", "--precision", "bf16-true"],
         "--dtype float16 and --precision bf16-true disagree (that precision keeps the weights in bfloat16); give one of them"),
        (["--dtype", "bfloat16", "--precision", "bf16-mixed"],
         "--dtype bfloat16 and --precision bf16-mixed disagree (that precision keeps the weights in float32); give one of them"),
        (["--dtype", "int8"], "--dtype must be one of float32, float16, bfloat16, got 'int8'"),
    ]
    for flags, message in bad:
        with pytest.raises(SystemExit) as exit:
            cli.main(["validate", str(tiny_checkpoint), *flags])
        assert exit.value.code == 1 and capsys.readouterr().err.strip() == f"litgpt validate: error: {message}"


def test_model_filename_names_the_weights_file(tiny_checkpoint, capsys):
    import litgpt.__main__ as cli

    (tiny_checkpoint / "lit_model.pth").rename(tiny_checkpoint / "other.pth")
    cli.main(["validate", str(tiny_checkpoint), "--model_filename", "other.pth"])
    assert "No problems found." in capsys.readouterr().out
    state = torch.load(tiny_checkpoint / "other.pth")
    state.pop("lm_head.weight")
    torch.save(state, tiny_checkpoint / "other.pth")
    with pytest.raises(ValueError, match="1 problem"):
        validate(tiny_checkpoint, model_filename="other.pth")
    assert "missing from other.pth, e.g. lm_head.weight" in capsys.readouterr().out
    with pytest.raises(ValueError, match="1 problem"):
        validate(tiny_checkpoint)  # the default, lit_model.pth, is not there
    assert "problem: lit_model.pth is missing" in capsys.readouterr().out


def test_lightnings_short_precision_names_are_the_mixed_ones():
    from litgpt.validate import precision_bytes

    assert precision_bytes("bf16") == precision_bytes("bf16-mixed") == (4, 2)
    assert precision_bytes("16") == precision_bytes("16-mixed") == (4, 2)
    assert precision_bytes("bf16-true") == (2, 2)
