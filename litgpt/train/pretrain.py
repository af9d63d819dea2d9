"""`litgpt pretrain`: train a model from random weights (or continue from a checkpoint) on a token stream.

Pretraining's own part is small: pick the architecture, initialise its weights, count its FLOPs; the data
module gives the tokens and `litgpt.train.loop.fit` does the rest.
"""

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Literal, Optional, Union

from litgpt.config import Config, find_entry, names
from litgpt.data import DataModule  # no torch inside; imports the data modules so `--data NAME` finds them
from litgpt.train.args import EvalArgs, LogArgs, TrainArgs, to_yaml_value

if TYPE_CHECKING:
    from lightning import Fabric

    from litgpt.model import GPT
    from litgpt.train.loop import RunSpec


def setup(
    model_name: Optional[str] = None,
    model_config: Optional[Config] = None,
    out_dir: Path = Path("out/pretrain"),
    precision: Optional[str] = None,
    initial_checkpoint_dir: Optional[Path] = None,
    resume: Union[bool, Literal["auto"], Path] = False,
    data: Optional[DataModule] = None,
    train: TrainArgs = TrainArgs(
        save_interval=1000,
        log_interval=1,
        global_batch_size=512,
        micro_batch_size=4,
        max_tokens=int(3e12),
        max_norm=1.0,
        min_lr=4e-5,
        lr_warmup_steps=2000,
        tie_embeddings=False,
    ),
    eval: EvalArgs = EvalArgs(interval=1000, max_iters=100),
    log: LogArgs = LogArgs(),
    optimizer: Union[str, Dict] = "AdamW",
    devices: Union[int, str] = "auto",
    num_nodes: int = 1,
    tokenizer_dir: Optional[Path] = None,
    logger_name: Literal["wandb", "tensorboard", "csv", "mlflow", "litlogger"] = "tensorboard",
    seed: int = 42,
    compile: Optional[bool] = None,
    fp8: Literal["none", "rowwise", "tensorwise"] = "none",
) -> None:
    """Pretrain a model.

    Args:
        model_name: A registry name (`litgpt pretrain list` prints them), or "list". Ignored when
            `model_config` is given.
        model_config: The architecture as Config fields; takes precedence over `model_name`.
        out_dir: Where checkpoints (step-XXXXXXXX/), logs (logs/) and the trained model (final/) go.
        precision: bf16-mixed, bf16-true, 16-mixed, 16-true or 32-true; default bf16-mixed on GPUs that
            have bf16, 32-true on CPUs.
        initial_checkpoint_dir: A checkpoint folder whose weights to start from instead of random ones
            (continued pretraining).
        resume: Continue an interrupted run: true (the latest step-* checkpoint in out_dir, which must
            exist), auto (the latest if there is one, else start afresh) or the path of a checkpoint.
        data: The data module, e.g. `--data TextFiles --data.train_data_path DIR`; default `TinyLlama` (its
            chunks prepared under data/).
        train: Training arguments (`--train.*`).
        eval: Validation arguments (`--eval.*`).
        log: Experiment-tracker arguments (`--log.*`).
        optimizer: An optimizer name ("AdamW") or {class_path, init_args}.
        devices: Devices (GPUs, or CPU processes) per node; "auto" takes every GPU, or one CPU process.
        num_nodes: Machines to train on.
        tokenizer_dir: The folder of the tokenizer that tokenizes the data; copied into every checkpoint.
        logger_name: Where metrics go: tensorboard and csv write under out_dir/logs.
        seed: The random seed of the weights and the data order.
        compile: Compile the model with torch.compile; default: on when training on CUDA GPUs.
        fp8: Train the transformer blocks' linear layers with float8 matmuls (torchao's float8 training, with
            row-wise or tensor-wise scaling; the weights, checkpoints and the rest stay in --precision, which
            must be bf16-mixed or bf16-true). Needs a CUDA GPU of compute capability >= 8.9 (H100, H200, L40,
            RTX 4090) and `pip install torchao`.
    """
    if model_name == "list":
        print("\n".join(names()))
        return
    hparams = {name: to_yaml_value(value) for name, value in locals().items()}

    from litgpt.checkpoint import resolve_checkpoint_dir
    from litgpt.model import Block
    from litgpt.settings_check import check_training
    from litgpt.tokenizer import Tokenizer
    from litgpt.train import loop, monitor

    # every check before any work
    check_training(train, eval, optimizer, data)
    loop.check_fp8(fp8, precision)
    config = model_config if model_config is not None else _config_for(model_name)
    if tokenizer_dir is not None:
        tokenizer_dir = resolve_checkpoint_dir(tokenizer_dir)
    tokenizer = Tokenizer(tokenizer_dir) if tokenizer_dir is not None else None
    if tokenizer is not None and tokenizer.vocab_size > config.padded_vocab_size:
        raise ValueError(
            f"The tokenizer in {tokenizer_dir} has {tokenizer.vocab_size} tokens, more than the model's "
            f"padded_vocab_size ({config.padded_vocab_size})"
        )
    if data is None:  # as LitGPT: TinyLlama's mix, prepared in advance under data/
        from litgpt.data import TinyLlama

        data = TinyLlama()
    if train.max_seq_length is not None and train.max_seq_length > config.block_size:
        raise ValueError(f"--train.max_seq_length ({train.max_seq_length}) exceeds the model's block_size ({config.block_size})")
    if eval.max_new_tokens is not None:
        raise ValueError("pretrain does not generate samples during validation: leave --eval.max_new_tokens unset")
    if initial_checkpoint_dir is not None:
        initial_checkpoint_dir = resolve_checkpoint_dir(initial_checkpoint_dir)
        if not (initial_checkpoint_dir / "lit_model.pth").is_file():
            raise FileNotFoundError(f"--initial_checkpoint_dir: no lit_model.pth in {str(initial_checkpoint_dir)!r}")
        if resume not in (False, None, "auto"):
            raise ValueError("--initial_checkpoint_dir and --resume exclude each other (except --resume auto)")
    devices = loop.parse_devices(devices)
    if num_nodes < 1:
        raise ValueError(f"--num_nodes must be at least 1, got {num_nodes}")
    loop.check_train(train, eval, devices * num_nodes)
    loop.resolve_optimizer(optimizer)
    resume_path = loop.resolve_resume(resume, out_dir)
    seq_len = min(train.max_seq_length or config.block_size, config.block_size)
    data.connect(tokenizer=tokenizer, batch_size=train.micro_batch_size, max_seq_length=seq_len)
    data.check()
    monitor.check_logger(logger_name)
    precision = precision or loop.default_precision()

    start = f"continued from {initial_checkpoint_dir}" if initial_checkpoint_dir is not None else "from random weights"
    monitor.announce_start("pretrain", config.name, data, f"pretraining {start}", train, optimizer, out_dir, hparams)
    logger = monitor.make_logger(logger_name, out_dir, f"pretrain-{config.name}", log, resume_path is not None, train.log_interval)
    fabric = loop.make_fabric(devices, num_nodes, precision, [logger], Block)
    run = loop.RunSpec(
        method=loop.Method(pretraining=True), data=data, train=train, eval=eval, optimizer=optimizer, out_dir=out_dir, resume=resume_path,
        files=loop.FolderFiles(config, tokenizer_dir, hparams), compile=compile, fp8=fp8,
    )
    fabric.launch(_run, run, config=config, devices=devices, initial_checkpoint_dir=initial_checkpoint_dir, seed=seed)


def _run(fabric: "Fabric", run: "RunSpec", config: Config, devices: int, initial_checkpoint_dir: Optional[Path], seed: int) -> None:
    """The work of each process: the initial weights, the data prepared once, `fit`."""
    from litgpt.checkpoint import check_shapes, model_state_dict, read_plain
    from litgpt.model import GPT
    from litgpt.train import loop

    loop.cpu_threads(fabric, devices)
    from lightning.fabric.loggers import CSVLogger

    if not isinstance(fabric.logger, CSVLogger):  # the only logger that has no place for them
        fabric.logger.log_hyperparams(run.files.hparams)
    fabric.seed_everything(seed)  # the same initial weights on every process
    if fabric.is_global_zero:
        run.out_dir.mkdir(parents=True, exist_ok=True)
    with fabric.init_module(empty_init=False):
        model = GPT(config)
    if initial_checkpoint_dir is not None:
        weights = initial_checkpoint_dir / "lit_model.pth"
        state_dict = model_state_dict(read_plain(weights, mmap=True))
        check_shapes(model, state_dict, weights)
        model.load_state_dict(state_dict)
    else:
        init_weights(model, seed)
    if run.train.tie_embeddings:
        model.transformer.wte.weight = model.lm_head.weight
    if run.train.max_seq_length is not None:
        model.max_seq_length = run.train.max_seq_length
    loop.prepare_data(fabric, run.data)
    loop.fit(fabric, model, run)


def init_weights(model: "GPT", seed: int = 42) -> None:
    """GPT-NeoX-style initialisation: normal(0, sqrt(2 / (5 n_embd))) for embeddings and linear layers, smaller
    (1 / (sqrt(n_embd) n_layer)) for the projections that write into the residual stream; zero biases.

    The values come from a CPU generator seeded with `seed`, whatever device the model is on, so one GPU, FSDP
    over several (which builds the model on the CPU) and a CPU run all start from the same weights.
    """
    import math

    import torch
    import torch.nn as nn

    n_embd, n_layer = model.config.n_embd, model.config.n_layer
    std = {}
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            std[module] = math.sqrt(2.0 / 5 / n_embd)
    for block in model.transformer.h:
        for proj in (block.attn.proj, getattr(block.mlp, "proj", None)):
            if isinstance(proj, nn.Linear):
                std[proj] = 1 / math.sqrt(n_embd) / n_layer
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module, value in std.items():
            weight = module.weight
            if weight.device.type == "cpu" and weight.dtype == torch.float32:
                # drawn in place: a parallel copy here would start OpenMP threads before the data module forks
                # its tokenizing workers (litgpt/data/chunks.py), and forked children of such a process can hang
                weight.normal_(0.0, value, generator=generator)
            else:
                weight.copy_(torch.empty(weight.shape, dtype=torch.float32).normal_(0.0, value, generator=generator))
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()


def _config_for(model_name: Optional[str]) -> Config:
    if model_name is None:
        raise ValueError("Give a model: a registry name (`litgpt pretrain list` prints them) or --model_config")
    if find_entry(model_name) is None:
        matches = difflib.get_close_matches(model_name, names(), n=5, cutoff=0.6)
        matches += [n for n in names() if n.lower() == model_name.lower() and n not in matches]
        hint = f"; did you mean {', '.join(matches)}?" if matches else ""
        raise ValueError(f"Unknown model name {model_name!r}{hint} (`litgpt pretrain list` prints them all)")
    return Config.from_name(model_name)
