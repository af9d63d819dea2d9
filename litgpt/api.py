"""`LLM`: load a checkpoint and generate from Python.

    llm = LLM.load("microsoft/phi-2")            # a folder, checkpoints/ORG/NAME, or downloaded on first use
    llm.generate("What do llamas eat?", top_k=1)
    llm.generate(["Hi", "What is 2 + 2?"])        # one padded batch, each row as if alone
    for piece in llm.generate("Tell me a story", stream=True): print(piece, end="")

The commands (`generate`, `chat`, ...) load their model through `LLM.load` too. In a Lightning `Trainer`, load with
`distribute=None` and call `llm.trainer_setup()` in the LightningModule's `setup` (tutorials/python-api.md).
"""

import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Literal, Optional, Tuple, Union

import torch
import torch.nn as nn

from litgpt.checkpoint import precision_name, resolve_checkpoint_dir
from litgpt.hub import resolve
from litgpt.config import Config
from litgpt.engine.core import DecodeStep, decode_step, ensure_kv_cache, fast_decode_step
from litgpt.engine.batcher import generate_batch
from litgpt.model import GPT
from litgpt.prompts import ChatTemplate, PromptStyle, save_prompt_style
from litgpt.quantize import Quantize, check_quantize, quantize_linears
from litgpt.settings_check import check_generation
from litgpt.tokenizer import Tokenizer



class LLM(nn.Module):
    """A model with its tokenizer and prompt style, ready to generate. `llm(input_ids)` returns logits.

    Build one with `LLM.load`.
    """

    def __init__(
        self,
        model: Optional[GPT],
        tokenizer: Tokenizer,
        prompt_style: PromptStyle,
        config: Config,
        checkpoint_dir: Optional[Path] = None,
    ) -> None:
        super().__init__()
        self.model = model
        # where `preprocessor.encode` puts ids until a model is placed (LitGPT's default; `distribute` updates it)
        self.preprocessor = Preprocessor(tokenizer, "cuda" if torch.cuda.is_available() else "cpu")
        self.prompt_style = prompt_style
        self.config = config
        self.checkpoint_dir = checkpoint_dir
        self.fabric = None  # LitGPT's Fabric slot: no Fabric manages the model here (LitGPT's value without one)
        self.quantize: Optional[str] = None
        self.decode_step: DecodeStep = decode_step  # set by `distribute`: CUDA graphs on GPUs, compiled if asked

    @property
    def tokenizer(self) -> Tokenizer:
        return self.preprocessor.tokenizer

    @property
    def device(self) -> torch.device:
        self._require_model()
        return self.model.lm_head.weight.device

    @classmethod
    def load(
        cls,
        model: str,
        init: Literal["pretrained", "random"] = "pretrained",
        tokenizer_dir: Optional[Union[str, Path]] = None,
        access_token: Optional[str] = None,
        distribute: Optional[Literal["auto"]] = "auto",
        accelerator: str = "auto",
        devices: Union[int, List[int]] = 1,
        precision: Optional[str] = None,
        quantize: Quantize = None,
        compile: bool = False,
    ) -> "LLM":
        """Load a model for inference.

        Args:
            model: a checkpoint folder, `ORG/NAME` under checkpoints/, or a model name from `litgpt download list`
                (downloaded to checkpoints/ when not there). With `init="random"`, a registry name.
            init: "pretrained" loads the weights; "random" initialises them (needs `tokenizer_dir`).
            tokenizer_dir: a folder whose tokenizer to use instead of the checkpoint's.
            access_token: Hugging Face token for gated models, when downloading.
            distribute: "auto" puts the model on a device now; None leaves that to `llm.distribute(...)`.
            accelerator, devices, precision, quantize, compile: as in `distribute`, used when `distribute="auto"`.
        """
        torch.set_float32_matmul_precision("high")  # fp32 products on TF32 tensor cores where a GPU has them, as LitGPT
        if init == "pretrained":
            checkpoint_dir = resolve(model, access_token)
            config = Config.from_checkpoint(checkpoint_dir)
        elif init == "random":
            checkpoint_dir = None
            config = Config.from_name(str(model))
        else:
            raise ValueError(f"init must be 'pretrained' or 'random', got {init!r}")
        if tokenizer_dir is not None:
            tokenizer_dir = resolve_checkpoint_dir(tokenizer_dir)
        elif checkpoint_dir is None:
            raise ValueError("A randomly initialised model needs a tokenizer: pass `tokenizer_dir`")
        tokenizer = Tokenizer(tokenizer_dir or checkpoint_dir)
        prompt_style = PromptStyle.from_checkpoint(checkpoint_dir, config) if checkpoint_dir else PromptStyle.from_config(config)
        llm = cls(None, tokenizer, prompt_style, config, checkpoint_dir)
        if distribute == "auto":
            llm.distribute(accelerator=accelerator, devices=devices, precision=precision, quantize=quantize, compile=compile)
        elif distribute is not None:
            raise ValueError(f"distribute must be 'auto' or None, got {distribute!r}")
        return llm

    def distribute(
        self,
        accelerator: str = "auto",
        devices: Union[int, Literal["auto"], List[int]] = "auto",
        precision: Optional[str] = None,
        quantize: Quantize = None,
        generate_strategy: Optional[Literal["sequential", "tensor_parallel"]] = None,
        fixed_kv_cache_size: Union[int, Literal["max_model_supported"], None] = None,
        compile: bool = False,
        weights_file: Optional[Union[str, Path]] = None,
    ) -> None:
        """Build the model on one device (or spread over several), with its weights, in `precision`, optionally quantized.

        Args:
            accelerator: "auto", "cpu", "cuda" (or "gpu") or "mps".
            devices: 1, "auto" (one device) or a one-element list of GPU indices; with `generate_strategy`, a count.
            precision: "bf16-true", "16-true" or "32-true"; default bf16 on GPUs that have it, else 32-true.
            quantize: bitsandbytes weight quantization (CUDA only): bnb.nf4, bnb.nf4-dq, bnb.fp4, bnb.fp4-dq, bnb.int8.
            generate_strategy: "sequential" spreads the blocks over `devices` (a count or "auto": every GPU), for a
                model larger than one GPU; "tensor_parallel" needs one process per GPU: use `litgpt generate_tp`.
            fixed_kv_cache_size: allocate the KV cache once with this many positions (or the whole context).
            compile: compile the single-token decode step with torch.compile (slower start, faster decoding). On
                GPUs the step replays CUDA graphs either way.
            weights_file: a weights file loaded over the checkpoint folder's model: LoRA or adapter weights, or a
                whole model's (`litgpt generate_full --finetuned_path`, `generate_adapter --adapter_path`).
        """
        if generate_strategy == "tensor_parallel":
            raise NotImplementedError("generate_strategy='tensor_parallel' needs one process per GPU: use `litgpt generate_tp`")
        if generate_strategy == "sequential":
            model = self._load_sequentially(accelerator, devices, precision, quantize)
        elif generate_strategy is not None:
            raise ValueError(f"generate_strategy must be 'sequential', 'tensor_parallel' or None, got {generate_strategy!r}")
        else:
            model = self._load_on_one_device(accelerator, devices, precision, quantize, weights_file)
        self.model, self.quantize = model, quantize
        self.preprocessor.device = model.transformer.wte.weight.device  # where token ids go in
        self.decode_step = fast_decode_step(compile)  # a model over several devices gets the plain step
        if fixed_kv_cache_size is not None:
            size = model.max_seq_length if fixed_kv_cache_size == "max_model_supported" else int(fixed_kv_cache_size)
            ensure_kv_cache(model, 1, size)

    def _load_on_one_device(self, accelerator: str, devices: Any, precision: Optional[str], quantize: Quantize,
                            weights_file: Optional[Union[str, Path]] = None) -> GPT:
        from litgpt.checkpoint import load_model, precision_dtype
        from litgpt.finetuned import finetuned_kind, load_finetuned

        device = _pick_device(accelerator, devices)
        if precision is not None and "mixed" in precision and quantize is not None:
            raise ValueError("Quantization and mixed precision cannot be combined; use a '-true' precision")
        dtype = precision_dtype(precision, device)
        if quantize is not None:
            check_quantize(quantize, device)
        load_on = "cpu" if quantize is not None else device  # bitsandbytes quantizes the layers as they move to the GPU
        if weights_file is not None:
            model = load_finetuned(self.checkpoint_dir, load_on, precision=precision_name(dtype), weights=Path(weights_file))
        elif self.checkpoint_dir is None:
            with torch.device(load_on):
                model = GPT(self.config)
            model = model.to(dtype=dtype).eval()
        elif finetuned_kind(self.checkpoint_dir) is not None:  # LoRA weights not merged yet, Adapter, Adapter v2
            model = load_finetuned(self.checkpoint_dir, load_on, precision=precision_name(dtype))
        else:
            model = load_model(self.checkpoint_dir, device=load_on, precision=precision_name(dtype))
        if quantize is not None:  # LoRA is merged by now; adapters keep their own small layers in `dtype`
            model = quantize_linears(model, quantize, dtype).to(device)
            model.reset_parameters()
        return model

    def _load_sequentially(self, accelerator: str, devices: Any, precision: Optional[str], quantize: Quantize) -> GPT:
        from litgpt.checkpoint import precision_dtype
        from litgpt.engine.devices import pick_devices
        from litgpt.engine.sequential import load_sequentially, place_sequentially

        if not (devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool))):
            raise ValueError(f"generate_strategy='sequential' takes devices as a count or 'auto', got {devices!r}")
        targets = pick_devices({"gpu": "cuda"}.get(accelerator, accelerator), devices)
        if self.checkpoint_dir is None:
            model = place_sequentially(GPT(self.config), targets, precision_dtype(precision, targets[0])).eval()
        else:
            model = load_sequentially(self.checkpoint_dir, targets, precision=precision, quantize=quantize)
        return model

    def forward(
        self,
        input_ids: torch.Tensor,
        target_ids: Optional[torch.Tensor] = None,
        loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Logits (B, T, vocab) of `input_ids` (B, T); with `target_ids`, also the next-token loss against them."""
        self._require_model()
        logits = self.model(input_ids.to(self.device))
        if target_ids is None:
            return logits
        shifted_logits, shifted_targets = logits[..., :-1, :], target_ids[..., 1:].to(logits.device)
        if loss_fn is not None:
            return logits, loss_fn(shifted_logits, shifted_targets)
        loss = nn.functional.cross_entropy(
            shifted_logits.reshape(-1, logits.size(-1)).float(), shifted_targets.reshape(-1), ignore_index=-100
        )
        return logits, loss

    def state_dict(self, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        """The GPT's state dict, with LitGPT's key names (no `model.` prefix)."""
        self._require_model()
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        self._require_model()
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)

    def trainer_setup(self, trainer_ckpt: Optional[Union[str, Path]] = None) -> None:
        """Build the model for a Lightning `Trainer`, on the CPU in float32: the Trainer places it and sets its precision.

        Call it from your LightningModule's `setup` after `LLM.load(..., distribute=None)`.

        Args:
            trainer_ckpt: a `.ckpt` file a Trainer saved: its `state_dict` is loaded, every key stripped of the
                LightningModule's attribute that holds this LLM (`llm.transformer...` -> `transformer...`), and it
                must fit the model exactly. Without it, the checkpoint folder's lit_model.pth (keys it lacks keep
                their initial values). Only tensors and plain values are read: a file that needs unpickling is refused.
        """
        from litgpt.checkpoint import CheckpointError, check_shapes, model_state_dict, read_plain

        if trainer_ckpt is not None:
            path = Path(trainer_ckpt)
            if not path.is_file():
                raise FileNotFoundError(f"trainer_ckpt: no file at {str(path)!r}")
            state_dict = _strip_module_prefix(read_plain(path, mmap=True), path)
        elif self.checkpoint_dir is not None:
            path = self.checkpoint_dir / "lit_model.pth"
            if not path.is_file():
                raise FileNotFoundError(f"No lit_model.pth in {str(self.checkpoint_dir)!r} to start training from; pass `trainer_ckpt`")
            state_dict = model_state_dict(read_plain(path, mmap=True))
        else:
            raise ValueError("No weights to start from: pass `trainer_ckpt`, or save the random model with `llm.save(...)` and load that folder")
        model = GPT(self.config)
        check_shapes(model, state_dict, path)
        result = model.load_state_dict(state_dict, strict=False)
        if trainer_ckpt is not None and (result.missing_keys or result.unexpected_keys):
            raise CheckpointError(
                f"{path} does not fit {self.config.name!r}: {len(result.missing_keys)} weight(s) missing "
                f"{result.missing_keys[:3]}, {len(result.unexpected_keys)} unexpected {result.unexpected_keys[:3]}"
            )
        self.model, self.quantize, self.decode_step = model, None, decode_step

    @torch.inference_mode()
    def generate(
        self,
        prompt: Union[str, List[str]],
        sys_prompt: Optional[str] = None,
        max_new_tokens: int = 50,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: float = 1.0,
        return_as_token_ids: bool = False,
        stream: bool = False,
    ) -> Union[str, torch.Tensor, List[str], List[torch.Tensor], Iterator[Union[str, torch.Tensor]]]:
        """Continue `prompt` (wrapped in the prompt style) by up to `max_new_tokens` tokens.

        The parameters come in LitGPT's order, so `llm.generate("Hi", "You are terse.", 20)` works as there.

        Args:
            prompt: one prompt, or a list of prompts generated as one batch (the result is then a list).
            sys_prompt: the system prompt, for styles that have one.
            max_new_tokens: the most tokens to generate; generation also stops at the style's stop tokens.
            temperature: scales the logits; 0 is greedy.
            top_k: sample among the k most likely tokens only.
            top_p: sample among the most likely tokens whose probabilities add up to top_p.
            return_as_token_ids: return the generated token ids (a 1-D tensor) instead of text.
            stream: return an iterator of text pieces (of 1-element id tensors) as they are generated.
        """
        batched = not isinstance(prompt, str)
        if batched and stream:
            raise ValueError("stream=True takes a single prompt, not a list")
        if batched and not prompt:
            raise ValueError("The list of prompts is empty")
        check_generation(temperature, top_k, top_p, max_new_tokens)
        tokens = self._token_stream(list(prompt) if batched else [prompt], max_new_tokens, temperature, top_k, top_p, sys_prompt)
        if stream:
            ids = (step[0] for step in tokens)
            if return_as_token_ids:
                return (torch.tensor([i]) for row in ids for i in row)
            return self.tokenizer.decode_stream(ids)
        rows: List[List[int]] = [[] for _ in range(len(prompt) if batched else 1)]
        for step in tokens:
            for row, released in zip(rows, step):
                row.extend(released)
        outputs = [torch.tensor(row, dtype=torch.long) if return_as_token_ids else self.tokenizer.decode(row) for row in rows]
        return outputs if batched else outputs[0]

    def _token_stream(
        self, prompts: List[str], max_new_tokens: int, temperature: float, top_k: Optional[int], top_p: float, sys_prompt: Optional[str]
    ) -> Iterator[List[List[int]]]:
        """Per step, the new token ids of each prompt (see `generate_batch`)."""
        self._require_model()
        device = self.device
        encoded = [self.tokenizer.encode(self.prompt_style.apply(p, sys_prompt=sys_prompt), device=device) for p in prompts]
        longest = max(e.numel() for e in encoded)
        if longest + max_new_tokens > self.model.max_seq_length:
            raise ValueError(
                f"The prompt ({longest} tokens) plus max_new_tokens ({max_new_tokens}) exceeds the model's context "
                f"length ({self.model.max_seq_length} tokens)"
            )
        ensure_kv_cache(self.model, len(prompts), longest + max_new_tokens - 1, multiple=256)
        return generate_batch(
            self.model,
            encoded,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop_tokens=self.prompt_style.stop_tokens(self.tokenizer),
            step=self.decode_step,
        )

    def benchmark(self, num_iterations: int = 1, **generate_kwargs: Any) -> Tuple[Any, Dict[str, List[Optional[float]]]]:
        """Run `generate(**generate_kwargs)` `num_iterations` times; the last output and per-run metrics.

        The output is the text (the token ids with `return_as_token_ids=True`), also for `stream=True`.
        The metrics are LitGPT's, one value per run: "Seconds total", "Seconds to first token",
        "Tokens generated", "Inference speed in tokens/sec", and on CUDA "Total GPU memory allocated in GB".
        """
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be at least 1, got {num_iterations}")
        if not isinstance(generate_kwargs.get("prompt"), str):
            raise ValueError("benchmark needs one prompt: benchmark(prompt='...', ...)")
        as_ids = generate_kwargs.pop("return_as_token_ids", False)
        generate_kwargs.pop("stream", None)
        metrics: Dict[str, List[Optional[float]]] = {}
        outputs: Any = None
        for _ in range(num_iterations):
            start = time.perf_counter()
            first_token_at = None
            ids = []
            for token in self.generate(stream=True, return_as_token_ids=True, **generate_kwargs):
                first_token_at = first_token_at or time.perf_counter()
                ids.append(token)
            seconds = time.perf_counter() - start
            ids = torch.cat(ids) if ids else torch.tensor([], dtype=torch.long)
            outputs = ids if as_ids else self.tokenizer.decode(ids)
            metrics.setdefault("Seconds total", []).append(seconds)
            metrics.setdefault("Seconds to first token", []).append(None if first_token_at is None else first_token_at - start)
            metrics.setdefault("Tokens generated", []).append(ids.numel())
            metrics.setdefault("Inference speed in tokens/sec", []).append(ids.numel() / seconds)
            if self.device.type == "cuda":
                metrics.setdefault("Total GPU memory allocated in GB", []).append(torch.cuda.max_memory_allocated() / 1e9)
        return outputs, metrics

    def save(self, out_dir: Union[str, Path], prompt_style: Optional[PromptStyle] = None) -> None:
        """Write a checkpoint folder: lit_model.pth, model_config.yaml, the tokenizer files and prompt_style.yaml.

        Args:
            out_dir: the folder to write (created if missing).
            prompt_style: the style to write; by default the one the LLM was loaded with, so that the saved folder
                generates as this LLM does. (LitGPT writes `PromptStyle.from_config(config)`: the same style, unless
                the loaded folder named another in its prompt_style.yaml.)
        """
        self._require_model()
        if self.quantize is not None:
            raise NotImplementedError("Saving a quantized model is not supported; load it without `quantize` to save it")
        from litgpt.checkpoint import TOKENIZER_FILES, copy_tokenizer_files, save_state_dict_atomic

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_state_dict_atomic({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, out_dir / "lit_model.pth")
        self.config.save(out_dir / "model_config.yaml")
        copy_tokenizer_files(self.tokenizer.checkpoint_dir, out_dir, TOKENIZER_FILES + ("chat_template.jinja",))
        style = prompt_style or self.prompt_style
        if not isinstance(style, ChatTemplate):  # a chat template travels in tokenizer_config.json
            save_prompt_style(style, out_dir)

    def _require_model(self) -> None:
        if self.model is None:
            raise AttributeError(
                "The model is not on a device yet: call `llm.distribute(...)` first (or `llm.trainer_setup()` for a Lightning Trainer)"
            )


class Preprocessor:
    """The tokenizer and the device its ids go to (LitGPT's `llm.preprocessor`)."""

    def __init__(self, tokenizer: Tokenizer, device: Union[str, torch.device] = "cpu") -> None:
        self.tokenizer = tokenizer
        self.device = device

    def encode(self, text: str) -> torch.Tensor:
        """The token ids of `text` (a 1-D LongTensor on `device`)."""
        return self.tokenizer.encode(text, device=self.device)

    def decode(self, token_ids: torch.Tensor) -> str:
        return self.tokenizer.decode(token_ids)


def benchmark_dict_to_markdown_table(data: Dict[str, List[Optional[float]]]) -> str:
    """`LLM.benchmark`'s metrics as a Markdown table: per metric, the mean and the sample standard deviation of its
    runs (`nan` where there are too few; a run without a value, None, is left out)."""
    import math
    import statistics

    widths = (35, 27, 27)

    def row(cells: Tuple[str, str, str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |\n"

    table = row(("Metric", "Mean", "Std Dev")) + "|" + "|".join("-" * (width + 2) for width in widths) + "|\n"
    for name, values in data.items():
        present = [v for v in values if v is not None]
        mean = statistics.fmean(present) if present else math.nan
        std = statistics.stdev(present) if len(present) > 1 else math.nan
        table += row((name, f"{mean:.2f}", f"{std:.2f}"))
    return table


def _strip_module_prefix(checkpoint: Any, path: Path) -> Dict[str, Any]:
    """A Trainer checkpoint's `state_dict` with the first key's leading name (the LightningModule's attribute, as
    in `llm.`) cut from every key that starts with it."""
    from litgpt.checkpoint import CheckpointError

    state_dict = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not state_dict:
        raise CheckpointError(f"{path} is not a Lightning Trainer checkpoint: it has no 'state_dict' entry with weights")
    prefix = next(iter(state_dict)).split(".")[0] + "."
    return {key[len(prefix) :] if key.startswith(prefix) else key: value for key, value in state_dict.items()}


def _pick_device(accelerator: str, devices: Union[int, str, List[int]]) -> torch.device:
    from litgpt.engine.devices import resolve_accelerator

    accelerator = resolve_accelerator(accelerator)
    index = None
    if accelerator in ("cpu", "mps"):  # one device there, whatever `devices` asks for (as LitGPT)
        return torch.device(accelerator)
    if isinstance(devices, list):
        if len(devices) != 1:
            raise NotImplementedError(f"Generation runs on one device; got devices={devices}")
        index = devices[0]
    elif devices not in (1, "auto"):
        raise NotImplementedError(f"Generation runs on one device; got devices={devices!r}")
    return torch.device(accelerator, index) if index is not None and accelerator == "cuda" else torch.device(accelerator)
