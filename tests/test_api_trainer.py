"""`LLM` inside a Lightning `Trainer`, as LitGPT's Python API guide has users write it: `LLM.load(..., distribute=None)`
in the LightningModule, `llm.trainer_setup(trainer_ckpt=...)` in its `setup`, then generate, resume from the Trainer's
`.ckpt` and save. A tiny model, two steps on the CPU."""

import json
from pathlib import Path

import pytest
import torch
from generate.tiny import checkpoint, one_thread  # noqa: F401 (an autouse fixture)

from litgpt import LLM
from litgpt.checkpoint import CheckpointError

L = pytest.importorskip("lightning")


class LitLLM(L.LightningModule):
    def __init__(self, checkpoint_dir, tokenizer_dir=None, trainer_ckpt_path=None):
        super().__init__()
        self.llm = LLM.load(checkpoint_dir, tokenizer_dir=tokenizer_dir, distribute=None)
        self.trainer_ckpt_path = trainer_ckpt_path

    def setup(self, stage):
        self.llm.trainer_setup(trainer_ckpt=self.trainer_ckpt_path)

    def training_step(self, batch):
        _, loss = self.llm(input_ids=batch["input_ids"], target_ids=batch["labels"])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch):
        _, loss = self.llm(input_ids=batch["input_ids"], target_ids=batch["labels"])
        self.log("validation_loss", loss)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.llm.model.parameters(), lr=0.01)
        return [optimizer], [torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10))]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return checkpoint(tmp_path_factory, "tiny-random-llama", "llama")


def instruction_data(tmp_path: Path, llm: LLM):
    from litgpt.data import JSON

    records = [{"instruction": f"What do llamas eat? ({i})", "input": "", "output": "Grass and hay."} for i in range(8)]
    (tmp_path / "data.json").write_text(json.dumps(records))
    data = JSON(json_path=tmp_path / "data.json", val_split_fraction=0.25, num_workers=0)
    data.connect(llm.tokenizer, batch_size=2, max_seq_length=256)
    return data


def fit(tmp_path: Path, lit_model: LitLLM, data) -> "L.Trainer":
    trainer = L.Trainer(
        devices=1, accelerator="cpu", max_steps=2, limit_val_batches=1, precision="32-true",
        default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(lit_model, data)  # as LitGPT's guide passes it: the data set is a LightningDataModule too
    return trainer


def weights(llm: LLM):
    return {k: v.detach().cpu().clone() for k, v in llm.model.state_dict().items()}


def test_trainer_trains_resumes_and_saves(llama_dir, tmp_path):
    # continued pretraining / finetuning of a downloaded checkpoint
    lit_model = LitLLM(checkpoint_dir=llama_dir)
    assert lit_model.llm.model is None and lit_model.llm.fabric is None
    data = instruction_data(tmp_path, lit_model.llm)
    fit(tmp_path / "run1", lit_model, data)
    llm = lit_model.llm
    before = LLM.load(llama_dir, accelerator="cpu", precision="32-true").state_dict()
    trained = weights(llm)
    assert set(trained) == set(before) and any(not torch.equal(trained[k], before[k]) for k in before)
    llm.model.to(llm.preprocessor.device)
    assert isinstance(llm.generate("hello world", max_new_tokens=5), str)

    # resume from the Trainer's checkpoint: its keys are `llm.transformer...`, trainer_setup strips `llm.`
    (ckpt,) = (tmp_path / "run1").rglob("*.ckpt")
    assert next(iter(torch.load(ckpt, weights_only=True)["state_dict"])).startswith("llm.")
    resumed = LitLLM(checkpoint_dir=llama_dir, trainer_ckpt_path=ckpt)
    resumed.setup("fit")
    assert all(torch.equal(v, trained[k]) for k, v in weights(resumed.llm).items())
    fit(tmp_path / "run2", resumed, data)

    # save a LitGPT checkpoint folder and train on from it (no trainer_ckpt: its lit_model.pth)
    llm.save(tmp_path / "finetuned")
    again = LitLLM(checkpoint_dir=tmp_path / "finetuned")
    again.setup("fit")
    assert all(torch.equal(v, trained[k]) for k, v in weights(again.llm).items())


def test_trainer_setup_from_random_weights(llama_dir, tmp_path):
    """Pretraining from scratch: a random model is saved first, then trained from that folder."""
    llm = LLM.load("pythia-14m", tokenizer_dir=llama_dir, init="random", distribute=None)
    with pytest.raises(ValueError, match="No weights to start from"):
        llm.trainer_setup()
    LLM.load("pythia-14m", tokenizer_dir=llama_dir, init="random").save(tmp_path / "random")
    lit_model = LitLLM(checkpoint_dir=tmp_path / "random", tokenizer_dir=llama_dir)
    lit_model.setup("fit")
    assert lit_model.llm.model.lm_head.weight.dtype == torch.float32 and lit_model.llm.model.lm_head.weight.device.type == "cpu"
    assert lit_model.llm.model.training  # built for training: the Trainer sets train/eval itself


def test_trainer_ckpt_is_read_without_unpickling(llama_dir, tmp_path):
    llm = LLM.load(llama_dir, distribute=None)
    state = {f"lit.{k}": v for k, v in LLM.load(llama_dir, accelerator="cpu").state_dict().items()}

    class Payload:
        def __reduce__(self):
            return (print, ("pickle ran code",))

    torch.save({"state_dict": state, "extra": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        llm.trainer_setup(trainer_ckpt=tmp_path / "evil.ckpt")
    torch.save({"weights": state}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="no 'state_dict' entry"):
        llm.trainer_setup(trainer_ckpt=tmp_path / "other.ckpt")
    torch.save({"state_dict": dict(list(state.items())[1:])}, tmp_path / "partial.ckpt")
    with pytest.raises(CheckpointError, match="1 weight\\(s\\) missing"):
        llm.trainer_setup(trainer_ckpt=tmp_path / "partial.ckpt")
    with pytest.raises(FileNotFoundError, match="trainer_ckpt"):
        llm.trainer_setup(trainer_ckpt=tmp_path / "missing.ckpt")
    torch.save({"state_dict": state}, tmp_path / "good.ckpt")
    llm.trainer_setup(trainer_ckpt=tmp_path / "good.ckpt")
    assert all(torch.equal(v, state[f"lit.{k}"]) for k, v in llm.state_dict().items())


def test_data_sets_made_after_importing_lightning_are_lightning_data_modules(tmp_path):
    import pickle
    import subprocess
    import sys

    from litgpt.data import JSON, Alpaca2k

    data = JSON(json_path=tmp_path / "data.json", val_split_fraction=0.25)
    assert isinstance(data, L.LightningDataModule) and isinstance(data, JSON) and data.trainer is None
    assert data.val_split_fraction == 0.25 and isinstance(Alpaca2k(), L.LightningDataModule)
    copy = pickle.loads(pickle.dumps(data))  # e.g. to spawned processes
    assert isinstance(copy, JSON) and copy.val_split_fraction == 0.25
    # `--data JSON` still names one class (the Lightning-flavoured one is local, which the CLI passes over)
    import contextlib
    import io

    from litgpt.__main__ import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.suppress(SystemExit):
        main(["pretrain", "pythia-14m", "--data", "JSON", "--print_config"])
    assert "class_path: litgpt.data.JSON" in printed.getvalue()
    from litgpt.train.args import to_yaml_value  # and a run's hyperparameters.yaml names the class --data names

    assert to_yaml_value(data)["class_path"] == "litgpt.data.JSON"
    # without Lightning loaded first, a data set stays a plain object (and `--help` does not load Lightning)
    code = "import sys; from litgpt.data import JSON; JSON(); assert 'lightning' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
