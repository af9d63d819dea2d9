"""`litgpt finetune_lora` (and `finetune`), `finetune_full`, `finetune_adapter`, `finetune_adapter_v2`.

Four thin commands with LitGPT's flags and defaults (each flag declared once, in FLAGS); each picks a `Method`
(litgpt/train/methods.py) and hands a `FinetuneRun` to `_finetune`, which checks everything, loads the base model
and runs the one training loop.
out_dir/final/ is a complete checkpoint folder (weights, model_config.yaml, tokenizer files, prompt_style.yaml,
hyperparameters.yaml) that `litgpt generate` and `litgpt chat` read.
"""

import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Dict, Literal, Optional, Tuple, Union

from litgpt.data import DataModule  # no torch inside; imports the data modules so `--data NAME` finds them
from litgpt.generate.flags import REQUIRED, Flag, command
from litgpt.train.args import EvalArgs, LogArgs, TrainArgs, to_yaml_value

if TYPE_CHECKING:
    from lightning import Fabric

Quantize = Optional[Literal["bnb.nf4", "bnb.nf4-dq", "bnb.fp4", "bnb.fp4-dq", "bnb.int8-training"]]
Logger = Literal["wandb", "tensorboard", "csv", "mlflow", "litlogger"]
Resume = Union[bool, Literal["auto"], Path]


def _train_defaults() -> TrainArgs:
    return TrainArgs(save_interval=1000, log_interval=1, global_batch_size=16, micro_batch_size=1, lr_warmup_steps=100, epochs=5, max_seq_length=None)


# Every flag of the finetuning commands (and finetune_dpo), declared once: type, default, help. `_command` builds a
# command's signature and `Args:` docstring from the names it takes, which is what jsonargparse reads (flags,
# types, defaults, --help).
FLAGS: Dict[str, Flag] = {
    "checkpoint_dir": (Path, REQUIRED, "The base model's checkpoint folder (or ORG/NAME under checkpoints/, downloaded if missing)."),
    "out_dir": (Path, REQUIRED, "Where checkpoints (step-XXXXXX/), logs and the finetuned model (final/) go."),
    "precision": (Optional[str], None, "bf16-true, bf16-mixed, 16-true, 16-mixed or 32-true; default bf16-mixed on GPUs that "
                                       "have bf16, 32-true on CPUs."),
    "quantize": (Quantize, None, 'Quantize the frozen base weights with bitsandbytes (one CUDA GPU, a "-true" precision).'),
    "devices": (Union[int, str], 1, 'Devices (GPUs, or CPU processes) per node; "auto" takes every GPU.'),
    "num_nodes": (int, 1, "Machines to train on."),
    "lora_r": (int, 8, "The LoRA rank."),
    "lora_alpha": (int, 16, "The LoRA alpha (updates are scaled by alpha / r)."),
    "lora_dropout": (float, 0.05, "Dropout on the LoRA layers' input."),
    "lora_query": (bool, True, "Apply LoRA to the attention's query projection."),
    "lora_key": (bool, False, "Apply LoRA to the attention's key projection."),
    "lora_value": (bool, True, "Apply LoRA to the attention's value projection."),
    "lora_projection": (bool, False, "Apply LoRA to the attention's output projection."),
    "lora_mlp": (bool, False, "Apply LoRA to the MLP's linear layers."),
    "lora_head": (bool, False, "Apply LoRA to the output head."),
    "data": (Optional[DataModule], None, "The instruction data; default `Alpaca`."),
    "train": (TrainArgs, _train_defaults(), "Training arguments (`--train.*`)."),
    "log": (LogArgs, LogArgs(), "Experiment-tracker arguments (`--log.*`)."),
    "eval": (EvalArgs, EvalArgs(interval=100, max_new_tokens=100, max_iters=100), "Validation arguments (`--eval.*`)."),
    "optimizer": (Union[str, Dict], "AdamW", 'An optimizer name ("AdamW") or {class_path, init_args}.'),
    "logger_name": (Logger, "csv", "Where metrics go: csv and tensorboard write under out_dir/logs."),
    "seed": (int, 1337, "The random seed."),
    "access_token": (Optional[str], None, "A Hugging Face token, to download a gated base model."),
    "resume": (Resume, False, "Continue an interrupted run: true (the latest step-* checkpoint in out_dir), auto (the latest "
                              "if any) or the path of a checkpoint folder."),
    "compile": (Optional[bool], None, "Compile the model with torch.compile: faster steps after a slower first one. Default: on "
                                      "when training on CUDA GPUs without --quantize; --compile false trains eagerly."),
    "fp8": (Literal["none", "rowwise", "tensorwise"], "none",
            "Train the transformer blocks' linear layers with float8 matmuls (torchao's float8 training, with row-wise or "
            "tensor-wise scaling; the weights and checkpoints stay in --precision, which must be bf16-mixed or bf16-true). "
            "Needs a CUDA GPU of compute capability >= 8.9 (H100, H200, L40, RTX 4090) and `pip install torchao`."),
}
BASE = ("checkpoint_dir", "out_dir", "precision", "quantize", "devices", "num_nodes")
LORA = tuple(name for name in FLAGS if name.startswith("lora_"))
TRAINING = ("data", "train", "log", "eval", "optimizer", "logger_name", "seed", "access_token", "resume", "compile")


def _command(names: Tuple[str, ...], defaults: Dict[str, Any], helps: Optional[Dict[str, str]] = None,
             own: Optional[Dict[str, Flag]] = None) -> Callable[[Callable], Callable]:
    """`litgpt.generate.flags.command` over FLAGS: the flags `names` in this order, with the command's own
    `defaults` and `helps` for some of them, and flags of its `own` (type, default, help)."""
    table = {**FLAGS, **(own or {})}
    flags = {}
    for name in names:
        annotation, default, help = table[name]
        flags[name] = (annotation, defaults.get(name, default), (helps or {}).get(name, help))
    return command(names, **flags)


@_command(BASE + LORA + TRAINING, defaults={"out_dir": Path("out/finetune/lora")},
          helps={"quantize": 'Quantize the frozen base weights with bitsandbytes (QLoRA; one CUDA GPU, a "-true" precision).'})
def finetune_lora(args: SimpleNamespace) -> None:
    """Finetune a model with LoRA: low-rank updates of chosen layers train, the base weights stay frozen."""
    from litgpt.train.methods import LoRA

    flags = vars(args)
    _finetune(FinetuneRun.from_flags(LoRA.from_flags(flags), flags))


finetune = finetune_lora


@_command(("checkpoint_dir", "out_dir", "precision", "devices", "num_nodes", "resume", "compile") + TRAINING[:-2] + ("fp8",),
          defaults={"out_dir": Path("out/finetune/full"), "eval": EvalArgs(interval=600, max_new_tokens=100, max_iters=100)})
def finetune_full(args: SimpleNamespace) -> None:
    """Finetune all of a model's weights."""
    from litgpt.train.methods import Full

    _finetune(FinetuneRun.from_flags(Full(), vars(args)))


@_command(BASE + TRAINING, defaults={"out_dir": Path("out/finetune/adapter")})
def finetune_adapter(args: SimpleNamespace) -> None:
    """Finetune a model with the Adapter method: a gated learned prefix in the attention of the blocks from
    the third on trains, everything else stays frozen."""
    from litgpt.train.methods import Adapter

    _finetune(FinetuneRun.from_flags(Adapter(), vars(args)))


@_command(BASE + TRAINING, defaults={"out_dir": Path("out/finetune/adapter-v2")})
def finetune_adapter_v2(args: SimpleNamespace) -> None:
    """Finetune a model with Adapter v2: the Adapter's gated prefix, plus a learned scale and bias on every
    linear layer's output and the norms, train; the other weights stay frozen."""
    from litgpt.train.methods import AdapterV2

    _finetune(FinetuneRun.from_flags(AdapterV2(), vars(args)))


# ---------------------------------------------------------------------------------------------------------


def _hparams(args: Dict[str, Any]) -> Dict[str, Any]:
    """The command's arguments as a `--config` file writes them (access_token left out: it is a secret)."""
    hparams = {name: to_yaml_value(value) for name, value in args.items() if name != "access_token"}
    data = hparams.get("data")
    if isinstance(data, dict):
        style = data.get("init_args", {}).get("prompt_style")
        if style is not None and not isinstance(style, str):
            data["init_args"]["prompt_style"] = _style_name(args["data"].prompt_style)
    return hparams


def _style_name(style: Any) -> str:
    from litgpt.prompts import prompt_styles

    for name, cls in prompt_styles.items():
        if type(style) is cls:
            return name
    return f"{type(style).__module__}.{type(style).__name__}"


def _base_folder(checkpoint_dir: Path, access_token: Optional[str]) -> Path:
    """The base model's folder: as given, under checkpoints/, or downloaded there for a known ORG/NAME."""
    from litgpt.checkpoint import resolve_checkpoint_dir

    try:
        return resolve_checkpoint_dir(checkpoint_dir)
    except FileNotFoundError:
        from litgpt.config import find_entry

        entry = find_entry(Path(checkpoint_dir).name)
        if entry is None or Path(checkpoint_dir).is_absolute():
            raise
    from litgpt.hub import download

    repo_id = f"{entry['hf_config']['org']}/{entry['hf_config']['name']}"
    download(repo_id, checkpoint_dir=Path("checkpoints"), access_token=access_token)
    return Path("checkpoints") / repo_id


@dataclass
class FinetuneRun:
    """One finetuning run: the command's flags and its method, built once by the command (`from_flags`).
    `_finetune` checks it and fills in what it resolves (the base folder, devices, precision, resume, the folder
    files); `_run`, on every process, trains it."""

    method: Any
    hparams: Dict[str, Any]
    """The command's arguments as hyperparameters.yaml holds them"""
    checkpoint_dir: Path
    out_dir: Path
    data: Optional[DataModule]
    train: TrainArgs
    log: LogArgs
    eval: EvalArgs
    optimizer: Union[str, Dict]
    logger_name: str
    seed: int
    resume: Resume
    precision: Optional[str] = None
    quantize: Optional[str] = None
    devices: Union[int, str] = 1
    num_nodes: int = 1
    access_token: Optional[str] = None
    compile: Optional[bool] = None
    fp8: str = "none"
    config: Any = field(default=None, init=False)
    base_weights: Optional[Path] = field(default=None, init=False)
    resume_path: Optional[Path] = field(default=None, init=False)
    files: Any = field(default=None, init=False)

    @classmethod
    def from_flags(cls, method: Any, flags: Dict[str, Any]) -> "FinetuneRun":
        """The run of a command's arguments (its `locals()` on entry); flags of the method's own (`lora_*`,
        `dpo`) are in `method` already and only recorded in the hyperparameters."""
        names = {f.name for f in fields(cls) if f.init} - {"method", "hparams"}
        return cls(method=method, hparams=_hparams(flags), **{k: v for k, v in flags.items() if k in names})


def _finetune(run: FinetuneRun) -> None:
    """Check every setting before any work, resolve the run, and launch `_run` on each process."""
    from litgpt.config import Config
    from litgpt.data import Alpaca
    from litgpt.model import Block
    from litgpt.tokenizer import Tokenizer
    from litgpt.settings_check import check_training
    from litgpt.train import loop, monitor

    train, method = run.train, run.method
    check_training(train, run.eval, run.optimizer, run.data, min_lr=False)  # finetuning decays to 0: min_lr unused
    loop.check_fp8(run.fp8, run.precision)
    run.checkpoint_dir = _base_folder(Path(run.checkpoint_dir), run.access_token)
    run.base_weights = run.checkpoint_dir / "lit_model.pth"
    if not run.base_weights.is_file():
        raise FileNotFoundError(f"No lit_model.pth in {str(run.checkpoint_dir)!r}; convert a Hugging Face folder with `litgpt convert_to_litgpt`")
    config = run.config = Config.from_checkpoint(run.checkpoint_dir)
    tokenizer = Tokenizer(run.checkpoint_dir)
    data = run.data = Alpaca() if run.data is None else run.data
    # a recipe's max_seq_length may exceed a small model's block: rows then follow the longest sample, and a
    # sample longer than the block is cut to it (as LitGPT does); packed rows fill max_seq_length, so they cannot
    if train.max_seq_length is not None and train.max_seq_length > config.block_size and getattr(data, "packing", False):
        raise ValueError(f"--train.max_seq_length ({train.max_seq_length}) exceeds the model's block_size ({config.block_size})")
    run.devices = loop.parse_devices(run.devices)
    if run.num_nodes < 1:
        raise ValueError(f"--num_nodes must be at least 1, got {run.num_nodes}")
    run.precision = run.precision or loop.default_precision()
    if run.quantize is not None:
        _check_quantize(run.quantize, run.precision, run.devices * run.num_nodes)
        if run.compile is None:  # bitsandbytes' quantized layers: not measured compiled
            run.compile = False
    loop.check_train(train, run.eval, run.devices * run.num_nodes)
    loop.resolve_optimizer(run.optimizer)
    run.resume_path = loop.resolve_resume(run.resume, run.out_dir, method.state_file)
    data.connect(tokenizer=tokenizer, batch_size=train.micro_batch_size, max_seq_length=train.max_seq_length)
    data.check()
    if getattr(data, "inspect", 0):
        from litgpt.data.inspect import inspect_data

        return inspect_data(data, data.inspect, train.max_seq_length or config.block_size)
    monitor.check_logger(run.logger_name)
    method.base_weights = run.base_weights

    monitor.announce_start(f"finetune_{method.name}", f"{config.name} ({run.checkpoint_dir})", data,
                           _describe(method, run.quantize), train, run.optimizer, run.out_dir, run.hparams)
    logger = monitor.make_logger(run.logger_name, run.out_dir, f"finetune-{config.name}", run.log, run.resume_path is not None, train.log_interval)
    if run.quantize is not None:
        import lightning as L
        import torch
        from lightning.fabric.plugins import BitsandbytesPrecision

        dtype = {"16-true": torch.float16, "bf16-true": torch.bfloat16, "32-true": torch.float32}[run.precision]
        fabric = L.Fabric(devices=1, num_nodes=1, precision=None, loggers=[logger],
                          plugins=BitsandbytesPrecision(run.quantize[len("bnb."):], dtype))
    else:
        fabric = loop.make_fabric(run.devices, run.num_nodes, run.precision, [logger], Block)
    run.files = loop.FolderFiles(config, run.checkpoint_dir, run.hparams, prompt_style=getattr(data, "prompt_style", None))
    fabric.launch(_run, run)


def _describe(method: Any, quantize: Optional[str]) -> str:
    """The finetuning method in a few words, for the start-up summary."""
    if method.name == "lora":
        on = [name for name in ("query", "key", "value", "projection", "mlp", "head") if getattr(method, name)]
        text = f"LoRA (r {method.r}, alpha {method.alpha:g}, dropout {method.dropout:g}; on {', '.join(on)})"
    else:
        text = {"full": "full finetuning (every weight trains)", "adapter": "Adapter", "adapter_v2": "Adapter v2"}.get(method.name, method.name)
    return f"{text}, base weights quantized {quantize}" if quantize else text


def _check_quantize(quantize: str, precision: str, world_size: int) -> None:
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"--quantize {quantize} needs a CUDA GPU (bitsandbytes); none is available")
    if "mixed" in precision:
        raise ValueError(f"--quantize cannot be combined with --precision {precision}: use bf16-true, 16-true or 32-true")
    if world_size > 1:
        raise NotImplementedError("--quantize trains on one GPU: set --devices 1 and --num_nodes 1")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ValueError(f"--quantize {quantize} needs bitsandbytes: pip install bitsandbytes") from None


def _run(fabric: "Fabric", run: FinetuneRun) -> None:
    """The work of each process: the data prepared once, the sequence length from it, the base model, `fit`."""
    from litgpt.data.sft import SFTData
    from litgpt.train import loop

    loop.cpu_threads(fabric, run.devices)
    fabric.seed_everything(run.seed)
    if fabric.is_global_zero:
        run.out_dir.mkdir(parents=True, exist_ok=True)

    data, train, eval = run.data, run.train, run.eval
    loop.prepare_data(fabric, data)
    longest = None if getattr(data, "packing", False) else _longest_sample(data)  # packed rows fill --train.max_seq_length
    sample = ValidationSample(data, eval.max_new_tokens, eval.evaluate_example) if eval.max_new_tokens and isinstance(data, SFTData) else None
    seq_len = min(x for x in (longest, train.max_seq_length, run.config.block_size) if x)
    fabric.print(
        f"The longest sequence length in the train data is {longest}, the model's maximum sequence length is "
        f"{seq_len} and context length is {run.config.block_size}"
    )
    model = _base_model(fabric, run, seq_len)
    spec = loop.RunSpec(method=run.method, data=data, train=train, eval=eval, optimizer=run.optimizer, out_dir=run.out_dir,
                        resume=run.resume_path, files=run.files, compile=run.compile, fp8=run.fp8, sample=sample)
    loop.fit(fabric, model, spec)


def _base_model(fabric: "Fabric", run: FinetuneRun, seq_len: int) -> Any:
    """Say how many parameters the method trains, and load the base model's weights for it."""
    import torch

    from litgpt.checkpoint import load_state_dict, model_state_dict
    from litgpt.model import GPT

    method, config = run.method, run.config
    with torch.device("meta"):
        counted = method.transform(GPT(config))
    trainable = sum(p.numel() for n, p in counted.named_parameters() if method.is_trainable(n))
    total = sum(p.numel() for p in counted.parameters())
    fabric.print(f"Number of trainable parameters: {trainable:,}")
    fabric.print(f"Number of non-trainable parameters: {total - trainable:,}")
    del counted

    with torch.device("meta"):
        model = GPT(config)
    model.load_state_dict(model_state_dict(load_state_dict(run.base_weights)), assign=True)
    model.reset_parameters()  # the RoPE cache was built on the meta device
    if run.train.tie_embeddings:
        model.transformer.wte.weight = model.lm_head.weight
    model.max_seq_length = seq_len
    return model


def _longest_sample(data: DataModule) -> Optional[int]:
    """The token count of the longest training or validation sample, when the data set can tell (SFT data)."""
    lengths = []
    for name in ("train_dataset", "test_dataset"):
        dataset = getattr(data, name, None)
        if dataset is not None:
            # a preference pair has two rows (chosen, rejected_...): the longer counts
            lengths.extend(max(len(v) for k, v in dataset[i].items() if k.endswith("input_ids")) for i in range(len(dataset)))
    return max(lengths) if lengths else None


@dataclass
class ValidationSample:
    """What `fit` shows after each validation: a greedy reply to one validation instruction, in the data's
    prompt style. `which` is "first", "random" (drawn from the step, so every process picks the same one and
    the training random state is left alone) or an index."""

    data: Any
    max_new_tokens: int
    which: Union[str, int] = "first"

    def __post_init__(self) -> None:
        size = len(self.data.test_dataset)
        if isinstance(self.which, int) and not -size <= self.which < size:
            raise ValueError(f"--eval.evaluate_example {self.which} is out of range: the validation set has {size} records")

    def __call__(self, fabric: "Fabric", model: Any, step: int) -> None:
        from litgpt.train.loop import generate_sample

        dataset, tokenizer, style = self.data.test_dataset, self.data.tokenizer, self.data.prompt_style
        if self.which == "first":
            index = 0
        elif self.which == "random":
            index = random.Random(step).randrange(len(dataset))
        else:
            index = int(self.which)
        example = dataset.data[index] if dataset.transform is None else dataset.transform(dataset.data[index])
        extra = {k: v for k, v in example.items() if k not in ("instruction", "output") and isinstance(v, str)}
        prompt = tokenizer.encode(style.apply(example["instruction"], **extra))
        tokens = generate_sample(fabric, model, prompt, self.max_new_tokens, style.stop_tokens(tokenizer))
        fabric.print(f"Instruction: {example['instruction']}")
        if tokens:
            fabric.print(f"Generated: {tokenizer.decode(tokens)}\n")
        else:
            fabric.print(f"Generated nothing: the prompt's {prompt.numel()} tokens fill the training context of the model\n")
