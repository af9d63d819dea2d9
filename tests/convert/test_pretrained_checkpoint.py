"""convert_pretrained_checkpoint: training checkpoints (weights + optimizer state, wrapper prefixes) -> inference folders."""

import pytest
import torch
import yaml

from litgpt.checkpoint import CheckpointError, load_model
from litgpt.config import Config
from litgpt.convert.pretrained import convert_pretrained_checkpoint
from litgpt.model import GPT

CONFIG = Config(
    name="tiny-pretrained", block_size=32, n_layer=2, n_embd=32, n_head=4, n_query_groups=2, vocab_size=64,
    padding_multiple=64, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=48, bias=False,
    rotary_percentage=1.0, parallel_residual=False,
)


@pytest.fixture
def trained(tmp_path):
    torch.manual_seed(0)
    model = GPT(CONFIG).eval()
    folder = tmp_path / "out" / "pretrain" / "final"
    folder.mkdir(parents=True)
    (folder / "tokenizer.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text("{}")
    return model, folder


def logits(model):
    with torch.no_grad():
        return model(torch.arange(12).view(2, 6))


@pytest.mark.parametrize("prefix", ["_forward_module.", "_orig_mod.", "_forward_module._orig_mod."])
def test_training_checkpoint_becomes_an_inference_one(trained, tmp_path, prefix):
    model, folder = trained
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.arange(6).view(1, 6)).sum().backward()
    optimizer.step()
    state = {"model": {prefix + k: v for k, v in model.state_dict().items()}, "optimizer": optimizer.state_dict(), "iter_num": 7}
    torch.save(state, folder / "lit_model.pth")
    CONFIG.save(folder / "model_config.yaml")

    convert_pretrained_checkpoint(folder, tmp_path / "final")
    weights = torch.load(tmp_path / "final" / "lit_model.pth", weights_only=True)
    assert set(weights) == set(model.state_dict())
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == [
        "lit_model.pth", "model_config.yaml", "tokenizer.json", "tokenizer_config.json"
    ]
    assert torch.equal(logits(load_model(tmp_path / "final", precision="32-true")), logits(model))


def test_config_from_hyperparameters(trained, tmp_path):
    model, folder = trained
    torch.save(model.state_dict(), folder / "lit_model.pth")
    fields = {k: v for k, v in CONFIG.to_dict().items()}
    (folder / "hyperparameters.yaml").write_text(yaml.safe_dump({"model_name": "tiny-pretrained", "model_config": fields}))
    convert_pretrained_checkpoint(folder, tmp_path / "final")
    assert Config.from_file(tmp_path / "final" / "model_config.yaml").n_embd == 32
    assert torch.equal(logits(load_model(tmp_path / "final", precision="32-true")), logits(model))


def test_distributed_checkpoint_folder(trained, tmp_path):
    import warnings

    import torch.distributed.checkpoint as dcp

    model, folder = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no process group": a single-process save, as in this test
        dcp.save({"model": model.state_dict(), "iter_num": 3}, checkpoint_id=folder / "lit_model.pth")
    CONFIG.save(folder / "model_config.yaml")
    convert_pretrained_checkpoint(folder, tmp_path / "final")
    assert torch.equal(logits(load_model(tmp_path / "final", precision="32-true")), logits(model))
    assert not list((tmp_path / "final").glob("*.tmp"))


def test_weights_that_do_not_fit(trained, tmp_path):
    model, folder = trained
    torch.save({"model": {k: v for k, v in model.state_dict().items() if "ln_f" not in k}}, folder / "lit_model.pth")
    CONFIG.save(folder / "model_config.yaml")
    with pytest.raises(CheckpointError, match="does not fit its model config: Missing key"):
        convert_pretrained_checkpoint(folder, tmp_path / "final")
    assert not (tmp_path / "final" / "lit_model.pth").exists()


def test_no_config(trained, tmp_path):
    model, folder = trained
    torch.save(model.state_dict(), folder / "lit_model.pth")
    with pytest.raises(CheckpointError, match="has no model_config.yaml"):
        convert_pretrained_checkpoint(folder, tmp_path / "final")
    with pytest.raises(CheckpointError, match="must differ"):
        convert_pretrained_checkpoint(folder, folder)
