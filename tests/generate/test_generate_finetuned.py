"""LitGPT's generate_full / generate_adapter / generate_adapter_v2 flags: --input, --finetuned_path, --adapter_path,
max_new_tokens 100 by default, and their --print_config dumps read back through --config."""

import inspect
import shutil

import pytest
import torch

import litgpt.__main__ as cli
from litgpt.adapter import add_adapter, adapter_filter, adapter_v2_filter
from litgpt.checkpoint import load_model
from litgpt.generate.cli import generate, generate_adapter, generate_adapter_v2, generate_full
from litgpt.prompts import save_prompt_style

GREEDY = ["--prompt", "Hello", "--max_new_tokens", "6", "--temperature", "0"]


def run(capsys, *argv):
    cli.main([str(a) for a in argv])
    return capsys.readouterr().out


def copy_folder(source, target, skip=()):
    target.mkdir()
    for path in source.iterdir():
        if path.is_file() and path.name not in skip:
            shutil.copy(path, target / path.name)
    return target


@pytest.fixture
def here(tmp_path, monkeypatch):
    """Run in an empty folder, so that LitGPT's default weights paths (out/...) exist only where a test puts them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def adapter_weights(llama_dir, path, v2=False):
    """Write random adapter (v2) weights for the tiny llama to `path`, as finetune_adapter saves them."""
    torch.manual_seed(3)
    model = add_adapter(load_model(llama_dir), prompt_length=4, start_layer=0, v2=v2)
    keep = adapter_v2_filter if v2 else adapter_filter
    state = {k: torch.randn_like(v) if "adapter" in k or "gating" in k else v for k, v in model.state_dict().items() if keep(k)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def test_the_defaults_are_litgpts():
    for fn in (generate_full, generate_adapter, generate_adapter_v2):
        parameters = inspect.signature(fn).parameters
        assert parameters["max_new_tokens"].default == 100 and parameters["input"].default == ""
    assert inspect.signature(generate).parameters["max_new_tokens"].default == 50
    assert "input" not in inspect.signature(generate).parameters
    assert str(inspect.signature(generate_full).parameters["finetuned_path"].default) == "out/full/alpaca/lit_model_finetuned.pth"
    assert str(inspect.signature(generate_adapter).parameters["adapter_path"].default) == "out/finetune/adapter/final/lit_model.pth.adapter"
    assert (
        str(inspect.signature(generate_adapter_v2).parameters["adapter_path"].default)
        == "out/finetune/adapter-v2/final/lit_model.pth.adapter_v2"
    )


@pytest.mark.parametrize("command, v2", [("generate_adapter", False), ("generate_adapter_v2", True)])
def test_adapter_path_is_loaded_over_the_base_model(llama_dir, here, capsys, command, v2):
    name = "lit_model.pth.adapter_v2" if v2 else "lit_model.pth.adapter"
    weights = adapter_weights(llama_dir, here / "mine" / name, v2)
    base = run(capsys, "generate", llama_dir, *GREEDY)
    # the same weights inside a finetuned folder: what the explicit path must give
    folder = copy_folder(llama_dir, here / "folder")
    shutil.copy(weights, folder / name)
    expected = run(capsys, "generate", folder, *GREEDY)
    assert expected != base
    assert run(capsys, command, llama_dir, "--adapter_path", weights, *GREEDY) == expected
    # LitGPT's default path, when it exists, is the adapter of a plain base folder
    default = here / inspect.signature(generate_adapter_v2 if v2 else generate_adapter).parameters["adapter_path"].default
    default.parent.mkdir(parents=True)
    shutil.copy(weights, default)
    assert run(capsys, command, llama_dir, *GREEDY) == expected
    assert run(capsys, "generate", llama_dir, *GREEDY) == base  # plain generate has no such flag


def test_finetuned_path_replaces_the_weights(llama_dir, here, capsys):
    torch.manual_seed(4)
    state = {k: v + 0.05 * torch.randn_like(v) for k, v in load_model(llama_dir).state_dict().items()}
    weights = here / "ft.pth"
    torch.save(state, weights)
    folder = copy_folder(llama_dir, here / "folder", skip={"lit_model.pth"})
    torch.save(state, folder / "lit_model.pth")
    expected = run(capsys, "generate", folder, *GREEDY)
    assert expected != run(capsys, "generate", llama_dir, *GREEDY)
    assert run(capsys, "generate_full", llama_dir, "--finetuned_path", weights, *GREEDY) == expected
    # LitGPT's default path is read when it exists
    default = here / "out/full/alpaca/lit_model_finetuned.pth"
    default.parent.mkdir(parents=True)
    shutil.copy(weights, default)
    assert run(capsys, "generate_full", llama_dir, *GREEDY) == expected


def test_input_goes_into_the_prompt_style(llama_dir, here, capsys):
    folder = copy_folder(llama_dir, here / "alpaca")
    save_prompt_style("alpaca", folder)
    for command in ("generate_full", "generate_adapter", "generate_adapter_v2"):
        out = run(capsys, command, folder, "--prompt", "Sum these.", "--input", "2 and 3", "--max_new_tokens", "2")
        assert "### Instruction:\nSum these.\n\n### Input:\n2 and 3\n\n### Response:\n" in out, command
    assert "### Input:" not in run(capsys, "generate_full", folder, "--prompt", "Sum these.", "--max_new_tokens", "2")


def test_litgpt_print_config_dumps_are_read(llama_dir, here, capsys):
    # the keys and defaults of LitGPT 0.5.13's `litgpt generate_full --print_config` (and the adapter commands')
    common = (
        f"checkpoint_dir: {llama_dir}\nprompt: What food do llamas eat?\ninput: ''\nsys_prompt: null\n"
        "quantize: null\nmax_new_tokens: 100\ntop_k: 50\ntop_p: 1.0\ntemperature: 0.8\nprecision: null\n"
    )
    dumps = {
        "generate_full": "finetuned_path: out/full/alpaca/lit_model_finetuned.pth\n",
        "generate_adapter": "adapter_path: out/finetune/adapter/final/lit_model.pth.adapter\n",
        "generate_adapter_v2": "adapter_path: out/finetune/adapter-v2/final/lit_model.pth.adapter_v2\n",
    }
    for command, line in dumps.items():
        (here / "dump.yaml").write_text(common + line)
        out = run(capsys, command, "--config", here / "dump.yaml")
        assert out.startswith("What food do llamas eat?"), command


def test_a_missing_weights_file_is_a_one_line_error(llama_dir, here, capsys):
    for command, flag in (("generate_full", "--finetuned_path"), ("generate_adapter", "--adapter_path"), ("generate_adapter_v2", "--adapter_path")):
        with pytest.raises(SystemExit) as exit:
            cli.main([command, str(llama_dir), flag, "nope.pth"])
        err = capsys.readouterr().err.strip()
        assert exit.value.code == 1 and len(err.splitlines()) == 1, err
        assert err == f"litgpt {command}: error: {flag} nope.pth: no such file; give the path of the weights file to load"
    torch.save({"some.tensor": torch.zeros(2)}, here / "junk.pth")
    with pytest.raises(SystemExit):
        cli.main(["generate_adapter", str(llama_dir), "--adapter_path", "junk.pth"])
    err = capsys.readouterr().err.strip()
    assert err == "litgpt generate_adapter: error: junk.pth holds neither a whole model's weights nor LoRA or adapter weights"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU, --quantize runs (tested below)")
def test_quantize_with_a_weights_file_on_the_cpu_is_a_one_line_error(llama_dir, here, capsys):
    adapter_weights(llama_dir, here / "a.pth")
    with pytest.raises(SystemExit):
        cli.main(["generate_adapter", str(llama_dir), "--adapter_path", "a.pth", "--quantize", "bnb.nf4", *GREEDY])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs a CUDA GPU" in err, err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bitsandbytes quantization needs a CUDA GPU")
@pytest.mark.parametrize("v2", [False, True])
def test_an_adapter_runs_over_quantized_weights(llama_dir, here, capsys, v2):
    pytest.importorskip("bitsandbytes")
    adapter_weights(llama_dir, here / "a.pth", v2=v2)
    command = "generate_adapter_v2" if v2 else "generate_adapter"
    plain = run(capsys, command, llama_dir, "--adapter_path", "a.pth", *GREEDY)
    quantized = run(capsys, command, llama_dir, "--adapter_path", "a.pth", "--quantize", "bnb.int8", "--precision", "16-true", *GREEDY)
    assert plain.startswith("Hello") and quantized.startswith("Hello")
