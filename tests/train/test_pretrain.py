"""End-to-end pretraining of a tiny model on text files: learning, the final folder, exact resume, DDP."""

from pathlib import Path

import pytest
import torch

from train_helpers import CORPUS, logged, run_in_process, run_subprocess, tiny_spec

RANKS = Path(__file__).parent / "run_ranks.py"


STEPS = 24


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, text_dir) -> Path:
    """One uninterrupted single-process run that several tests inspect or compare against."""
    out = tmp_path_factory.mktemp("baseline") / "out"
    run_in_process(tiny_spec(out, text_dir, max_steps=STEPS, save_interval=12))
    return out


def test_loss_falls_and_final_folder_generates(baseline):
    from litgpt.checkpoint import load_model
    from litgpt.engine.batcher import generate_tokens
    from litgpt.tokenizer import Tokenizer

    losses = logged(baseline)
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert losses[STEPS] < losses[1] - 1.5, losses
    assert sorted(logged(baseline, "val_loss")) == [10, 20, STEPS]

    final = baseline / "final"
    for name in ("lit_model.pth", "model_config.yaml", "tokenizer.json", "tokenizer_config.json", "hyperparameters.yaml", "training.png"):
        assert (final / name).is_file(), name
    assert sorted(p.name for p in baseline.glob("step-*")) == ["step-00000012", "step-00000024"]
    assert not list(baseline.glob(".*")), "a temporary folder was left behind"

    model = load_model(final)
    tokenizer = Tokenizer(final)
    prompt = tokenizer.encode("Once upon a time")
    model.set_kv_cache(batch_size=1, max_seq_length=prompt.numel() + 10)
    model.max_seq_length = prompt.numel() + 10
    tokens = list(generate_tokens(model, prompt, 10, temperature=0.0))
    assert len(tokens) == 10 and all(0 <= t < tokenizer.vocab_size for t in tokens)


def test_hyperparameters_yaml_starts_the_same_run(baseline, text_dir):
    """The hyperparameters.yaml of a run parses back through the command's own parser."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from litgpt.train.pretrain import setup

    parser = ArgumentParser()
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(setup)
    cfg = parser.instantiate_classes(parser.parse_args(["--config", str(baseline / "final" / "hyperparameters.yaml")]))
    assert cfg.model_config.n_embd == 32 and cfg.train.max_steps == STEPS
    assert cfg.data.train_data_path == text_dir and cfg.out_dir == baseline
    assert cfg.optimizer == {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}}


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, text_dir, baseline):
    killed = tmp_path / "killed"
    spec = tiny_spec(killed, text_dir, max_steps=STEPS, save_interval=5)
    result = run_subprocess({**spec, "kill_at_step": 13}, check=False)
    assert result.returncode == -9, result.stderr[-2000:]
    assert (killed / "step-00000010").is_dir() and not (killed / "final").exists()
    assert max(logged(killed)) < STEPS

    spec["setup"]["resume"] = "auto"
    run_subprocess(spec)

    assert logged(killed) == logged(baseline)
    assert logged(killed, "val_loss") == logged(baseline, "val_loss")
    a = torch.load(baseline / "final" / "lit_model.pth", weights_only=True)["model"]
    b = torch.load(killed / "final" / "lit_model.pth", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_cpu_processes_sync_and_match_one(tmp_path):
    """DDP over gloo, started by Fabric's launcher: two processes, each reading its own half of every global batch,
    end with identical weights, and with the weights of one process that reads the whole batch. Without the
    gradient all-reduce each process would follow its own half of the data."""
    runs = {}
    for devices in (1, 2):
        out = tmp_path / f"devices-{devices}"
        # one micro-batch per step in both: LitGPT's pretraining lr follows the micro-batches (get_lr before each)
        spec = tiny_spec(out, tmp_path, max_steps=6, micro_batch_size=8 // devices)
        spec["setup"]["devices"] = devices
        run_subprocess(spec, runner=RANKS)
        runs[devices] = out

    one = torch.load(runs[1] / "final-rank0.pt", weights_only=True)
    rank0 = torch.load(runs[2] / "final-rank0.pt", weights_only=True)
    rank1 = torch.load(runs[2] / "final-rank1.pt", weights_only=True)
    assert one.keys() == rank0.keys() == rank1.keys()
    for name in one:
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between the two processes"
        torch.testing.assert_close(rank0[name], one[name], rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    assert logged(runs[2]) == pytest.approx(logged(runs[1]), rel=1e-4)
    assert (runs[2] / "final" / "lit_model.pth").is_file()


def test_initial_checkpoint_continues_from_trained_weights(tmp_path, text_dir, baseline):
    spec = tiny_spec(tmp_path / "continued", text_dir, max_steps=3)
    spec["setup"]["initial_checkpoint_dir"] = str(baseline / "final")
    run_in_process(spec)
    assert logged(tmp_path / "continued")[1] < logged(baseline)[1] - 1.5


def test_list_prints_every_registry_name(capsys):
    from litgpt.config import names
    from litgpt.train.pretrain import setup

    setup("list")
    printed = capsys.readouterr().out.split()
    assert printed == sorted(names()) and "pythia-14m" in printed


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if the run gets as far as creating Fabric."""
    from litgpt.train import loop

    def refuse(*args, **kwargs):
        raise AssertionError("the run started working before rejecting its input")

    monkeypatch.setattr(loop, "make_fabric", refuse)


def _setup_kwargs(tmp_path, text_dir, **overrides):
    from litgpt.config import Config
    from litgpt.data import TextFiles
    from litgpt.train.args import EvalArgs, TrainArgs

    from train_helpers import TINY_MODEL

    kwargs = dict(
        model_config=Config(**TINY_MODEL), out_dir=tmp_path / "out", data=TextFiles(text_dir, num_workers=0),
        tokenizer_dir=CORPUS, train=TrainArgs(max_steps=2, lr_warmup_steps=1, global_batch_size=4, micro_batch_size=4),
        eval=EvalArgs(),
        devices=1, logger_name="csv",
    )
    kwargs.update(overrides)
    return kwargs


def test_unknown_model_name_suggests_close_matches(tmp_path, text_dir, no_work):
    from litgpt.train.pretrain import setup

    kwargs = _setup_kwargs(tmp_path, text_dir, model_config=None, model_name="pythia-14")
    with pytest.raises(ValueError, match=r"Unknown model name 'pythia-14'; did you mean .*pythia-14m") as error:
        setup(**kwargs)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_folder_without_text_files_fails_before_work(tmp_path, text_dir, no_work):
    from litgpt.data import TextFiles
    from litgpt.train.pretrain import setup

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.md").write_text("not a .txt file")
    with pytest.raises(FileNotFoundError, match="no .txt files in") as error:
        setup(**_setup_kwargs(tmp_path, text_dir, data=TextFiles(empty)))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_tokenizer_dir_without_tokenizer_fails_before_work(tmp_path, text_dir, no_work):
    from litgpt.train.pretrain import setup

    folder = tmp_path / "no_tokenizer"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="No tokenizer in") as error:
        setup(**_setup_kwargs(tmp_path, text_dir, tokenizer_dir=folder))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        ({"resume": True}, FileNotFoundError, "no complete step-\\* checkpoint"),
        ({"resume": Path("nowhere")}, FileNotFoundError, "no checkpoint at"),
        ({"model_config": None}, ValueError, "Give a model"),
        ({"optimizer": "NoSuchOptimizer"}, ValueError, "is not an optimizer class"),
        ({"optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lrr": 1}}}, ValueError, "takes no argument"),
        ({"logger_name": "nope"}, ValueError, "Unknown logger"),
        ({"initial_checkpoint_dir": Path("/nonexistent/ckpt")}, FileNotFoundError, "No checkpoint folder"),
    ],
)
def test_bad_input_fails_before_work(tmp_path, text_dir, no_work, overrides, error, match):
    from litgpt.train.pretrain import setup

    with pytest.raises(error, match=match) as raised:
        setup(**_setup_kwargs(tmp_path, text_dir, **overrides))
    assert "\n" not in str(raised.value)


def test_no_data_defaults_to_tinyllama_which_says_what_to_prepare(tmp_path):
    """As LitGPT, `litgpt pretrain` without --data trains on TinyLlama's mix; unprepared, that is one line naming
    the folders to prepare, before any output folder."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "litgpt", "pretrain", "pythia-14m", "--train.max_tokens", "10"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "litgpt pretrain: error: --data.data_path: 'data/slimpajama/train' holds no litdata chunks (no index.json); "
        "TinyLlama expects slimpajama/train, slimpajama/val, starcoder there, tokenized with litdata.optimize"
    ]
    assert list(tmp_path.iterdir()) == []
