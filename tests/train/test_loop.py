"""Pieces of the training loop and its arguments, without training."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def test_learning_rate_warms_up_then_decays_to_the_minimum():
    from litgpt.train.loop import learning_rate

    def lr(it):
        return learning_rate(it, base=1.0, min_lr=0.1, warmup=10, max_iters=100)

    assert lr(0) == 0 and lr(5) == pytest.approx(0.5) and lr(10) == pytest.approx(1.0)
    assert lr(55) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr(100) == pytest.approx(0.1) and lr(200) == pytest.approx(0.1)
    values = [lr(i) for i in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_plan_steps_takes_the_tightest_limit():
    from litgpt.train.args import TrainArgs
    from litgpt.train.loop import plan_steps

    train = TrainArgs(global_batch_size=8, micro_batch_size=4, max_steps=100, max_tokens=10_000, epochs=3, lr_warmup_steps=1)
    assert plan_steps(train, accum=2, world_size=1, seq_len=10, iters_per_epoch=1000) == 100
    train.max_steps = None
    assert plan_steps(train, accum=2, world_size=1, seq_len=10, iters_per_epoch=1000) == 10_000 // 40 // 2
    assert plan_steps(train, accum=2, world_size=1, seq_len=10, iters_per_epoch=20) == 30
    with pytest.raises(ValueError, match="allow no full optimizer step"):
        plan_steps(TrainArgs(max_tokens=10, lr_warmup_steps=1), accum=1, world_size=1, seq_len=10, iters_per_epoch=None)


def test_split_batch_for_token_blocks_and_instruction_batches():
    from litgpt.train.loop import split_batch

    block = torch.arange(10).view(2, 5)
    x, y = split_batch(block, 4)
    assert x.tolist() == [[0, 1, 2, 3], [5, 6, 7, 8]] and y.tolist() == [[1, 2, 3, 4], [6, 7, 8, 9]]
    x, y = split_batch({"input_ids": block, "labels": -block}, 4)
    assert x.tolist() == [[0, 1, 2, 3], [5, 6, 7, 8]] and y.tolist() == [[-1, -2, -3, -4], [-6, -7, -8, -9]]


def test_batches_resume_a_plain_loader_at_the_same_batch():
    from torch.utils.data import DataLoader

    from litgpt.train.loop import Batches

    loader = DataLoader(list(range(10)), batch_size=3)  # 4 batches an epoch
    whole = Batches(loader)
    expected = [next(whole).tolist() for _ in range(9)]
    first = Batches(loader)
    seen = [next(first).tolist() for _ in range(6)]
    resumed = Batches(loader)
    resumed.load_state_dict(first.state_dict())
    assert seen + [next(resumed).tolist() for _ in range(3)] == expected
    assert resumed.epoch == 2


def test_resolve_optimizer_accepts_names_and_class_paths():
    from litgpt.train.loop import resolve_optimizer

    assert resolve_optimizer("AdamW") == (torch.optim.AdamW, {})
    cls, args = resolve_optimizer({"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, "momentum": 0.9}})
    assert cls is torch.optim.SGD and args == {"lr": 0.1, "momentum": 0.9}
    with pytest.raises(ValueError, match="is not an optimizer class"):
        resolve_optimizer("torch.optim.lr_scheduler.StepLR")
    # a recipe or hyperparameters.yaml from anyone: no module outside the optimizer packages is imported
    for path in ("torch.nn.Linear", "os.system", "torch.optimx.Evil", "subprocess.Popen"):
        with pytest.raises(ValueError, match="optimizers are taken from torch.optim"):
            resolve_optimizer({"class_path": path})
    with pytest.raises(ValueError, match="takes a name or"):
        resolve_optimizer({"init_args": {}})


def test_train_args_reject_contradictions():
    from litgpt.train.args import TrainArgs
    from litgpt.train.loop import check_train
    from litgpt.train.args import EvalArgs

    with pytest.raises(ValueError, match="not both"):
        TrainArgs(lr_warmup_steps=10, lr_warmup_fraction=0.1)
    with pytest.raises(ValueError, match="less than --train.micro_batch_size"):
        TrainArgs(global_batch_size=4, micro_batch_size=4).gradient_accumulation_iters(2)
    with pytest.raises(ValueError, match="Say how long to train"):
        check_train(TrainArgs(), EvalArgs(), 1)
    with pytest.warns(UserWarning, match="each optimizer step takes 120 samples"):
        assert check_train(TrainArgs(global_batch_size=125, micro_batch_size=5, max_steps=3, lr_warmup_steps=1), EvalArgs(), 8) == 3
    assert TrainArgs(global_batch_size=64, micro_batch_size=4).gradient_accumulation_iters(2) == 8


def test_warmup_in_micro_batches():
    from litgpt.train.args import TrainArgs

    train = TrainArgs(global_batch_size=16, micro_batch_size=4, lr_warmup_steps=5)
    assert train.warmup_iters(1, 1000, None) == 20
    assert TrainArgs(lr_warmup_steps=None, lr_warmup_fraction=0.5).warmup_iters(1, 1000, 30) == math.ceil(15)


def test_throughput_and_mfu():
    from litgpt.train.monitor import Throughput

    meter = Throughput(world_size=2, flops_per_iter=1000, peak=10_000.0, window=3)
    meter.update(0.0, 0, 0, 0)
    meter.update(2.0, 10, 40, 400)
    rates = meter.compute()
    assert rates["throughput/tokens_per_sec"] == 400 and rates["throughput/samples_per_sec"] == 40
    assert rates["throughput/flops_per_sec"] == 10_000 and rates["throughput/device/mfu"] == 0.5


def test_measured_flops_grow_with_the_batch():
    from litgpt.config import Config
    from litgpt.model import GPT
    from litgpt.train.monitor import measure_flops

    config = Config(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=32, padding_multiple=8)
    one, two = (measure_flops(lambda: GPT(config), b, 8) for b in (1, 2))
    assert one > 6 * 8 * sum(p.numel() for p in GPT(config).parameters()) * 0.5
    assert two == 2 * one


def test_plot(tmp_path):
    from litgpt.train.monitor import plot_training

    history = [{"step": s, "loss": 5 / s, "throughput/tokens_per_sec": 100.0 + s} for s in range(1, 20)]
    history.append({"step": 10, "val_loss": 0.8})
    plot_training(history, tmp_path / "training.png")
    assert (tmp_path / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_to_yaml_value():
    from litgpt.data import TextFiles
    from litgpt.train.args import TrainArgs, to_yaml_value

    assert to_yaml_value(TextFiles(Path("a/b"), num_workers=0)) == {
        "class_path": "litgpt.data.TextFiles",
        "init_args": {"train_data_path": "a/b", "val_data_path": None, "seed": 42, "num_workers": 0},
    }
    assert to_yaml_value(TrainArgs(max_steps=3, lr_warmup_steps=1))["max_steps"] == 3
    assert to_yaml_value({"p": Path("x"), "t": (1, 2)}) == {"p": "x", "t": [1, 2]}


def test_help_does_not_import_torch():
    code = "import sys; import litgpt.train.pretrain; assert 'torch' not in sys.modules, 'torch imported'"
    root = Path(__file__).parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_pretraining_init_depends_on_the_seed_alone():
    from litgpt.config import Config
    from litgpt.model import GPT
    from litgpt.train.pretrain import init_weights

    config = Config(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64, padded_vocab_size=64, bias=True)
    states = []
    for global_seed, dtype in ((0, torch.float32), (123, torch.float32), (7, torch.bfloat16)):
        torch.manual_seed(global_seed)  # the global (device) generators must not matter
        model = GPT(config).to(dtype)
        init_weights(model, seed=5)
        states.append({k: v.float() for k, v in model.state_dict().items()})
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
        torch.testing.assert_close(value, states[2][key], rtol=1e-2, atol=1e-2)  # bf16 rounds the same draws
    other = GPT(config)
    init_weights(other, seed=6)
    assert not torch.equal(other.lm_head.weight, states[0]["lm_head.weight"])
    proj = states[0]["transformer.h.0.attn.proj.weight"]
    assert proj.std() < states[0]["transformer.h.0.attn.qkv.weight"].std()  # the residual projections are smaller
    assert states[0]["transformer.h.0.attn.qkv.bias"].abs().max() == 0


def test_the_validation_sample_of_a_compiled_model_decodes_without_compiling():
    from lightning.fabric import Fabric

    from litgpt.config import Config
    from litgpt.engine.batcher import generate_tokens
    from litgpt.model import GPT
    from litgpt.train.loop import generate_sample

    torch.manual_seed(0)
    model = GPT(Config(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=64, padded_vocab_size=64))
    compiles = []

    def backend(graph, example_inputs):
        compiles.append(graph)
        return graph.forward

    fabric = Fabric(accelerator="cpu", devices=1, precision="32-true")
    wrapped = fabric.setup(torch.compile(model, backend=backend))
    compiled = wrapped._forward_module
    prompt = torch.tensor([1, 2, 3])
    got = generate_sample(fabric, wrapped, prompt, max_new_tokens=5)
    assert compiles == [] and wrapped._forward_module is compiled and wrapped.training
    model.eval()
    model.set_kv_cache(1, max_seq_length=8)
    assert got == list(generate_tokens(model, prompt, 5, temperature=0.0))
    model.clear_kv_cache()
    wrapped(torch.tensor([[1, 2, 3]]))  # training still goes through the compiled module
    assert compiles
