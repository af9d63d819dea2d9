"""`litgpt convert_to_litgpt --debug_mode true` (LitGPT's flag): every tensor printed instead of a progress bar,
and the same lit_model.pth."""

import shutil

import torch

import litgpt.__main__ as cli


def test_debug_mode_prints_each_tensor_instead_of_a_bar(hf_checkpoint, capsys):
    hf_dir, model = hf_checkpoint("llama-2")
    quiet_dir = hf_dir.parent / "quiet"
    shutil.copytree(hf_dir, quiet_dir)
    cli.main(["convert_to_litgpt", str(quiet_dir), "--dtype", "bfloat16"])
    out, err = capsys.readouterr()
    assert "Converting LlamaForCausalLM" in err and "Read " not in out

    cli.main(["convert_to_litgpt", str(hf_dir), "--dtype", "bfloat16", "--debug_mode", "true"])
    out, err = capsys.readouterr()
    assert "Converting LlamaForCausalLM" not in err
    hf_names = list(model.state_dict())
    for name in hf_names:
        shape = list(model.state_dict()[name].shape)
        assert f"Read {name} {shape} float32\n" in out, name
    assert "  wrote transformer.h.0.attn.qkv.weight " in out and " bfloat16 (from float32)\n" in out
    written = torch.load(hf_dir / "lit_model.pth", weights_only=True)
    assert out.count("  wrote ") == len(written)
    quiet = torch.load(quiet_dir / "lit_model.pth", weights_only=True)
    assert written.keys() == quiet.keys() and all(torch.equal(written[k], quiet[k]) for k in written)
