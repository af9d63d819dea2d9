"""`litgpt generate_sequentially`: generate with a model too large for one GPU, its blocks spread over several.

    tokens ─► wte, h[0 .. a)  ─►  h[a .. b)  ─►  ...  ─►  h[.. n_layer), ln_f, lm_head ─► logits
              device 0            device 1                 device N-1 (also the RoPE cache, tokens, logits)

`place_sequentially` is a transform of the plain GPT: it moves contiguous runs of blocks to the devices and
hooks each block to move its inputs (activations, cos/sin, positions, masks) to its own device, so only
activations cross a device boundary. Each block's KV cache lives beside the block. The devices work one
after the other (no pipelining): this buys memory, not speed.
"""

import sys
from functools import partial
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from litgpt.generate.cli import Quantize
from litgpt.generate.devices import Accelerator, Devices


def layer_ranges(n_layer: int, n_pieces: int) -> List[range]:
    """`n_pieces` contiguous runs of layer indices whose sizes differ by at most one (the first ones longer)."""
    if not 1 <= n_pieces <= n_layer:
        raise ValueError(f"Cannot split {n_layer} layers over {n_pieces} devices: use between 1 and {n_layer} devices")
    size, extra = divmod(n_layer, n_pieces)
    ranges, start = [], 0
    for piece in range(n_pieces):
        stop = start + size + (piece < extra)
        ranges.append(range(start, stop))
        start = stop
    return ranges


def place_sequentially(model: "GPT", devices: Sequence[Union[str, "torch.device"]], dtype: Optional["torch.dtype"] = None) -> "GPT":
    """Spread `model`'s blocks over `devices` in place (e.g. ["cuda:0", "cuda:1"], or ["cpu", "cpu"]); returns it.

    Embeddings go to the first device; ln_f, lm_head and the RoPE cache to the last, where the tokens given to
    the model and its logits live too (`model.lm_head.weight.device`). `model.set_kv_cache` then puts each
    block's cache on that block's device. The weights may be memory-mapped CPU tensors: each piece is copied
    to its device (and cast to `dtype`, when given) on its own.
    """
    import torch

    from litgpt.model import GPT

    devices = [torch.device(d) for d in devices]
    if not devices:
        raise ValueError("place_sequentially needs at least one device")
    if "set_kv_cache" in vars(model):
        raise ValueError("The model is placed already; place a freshly loaded model")
    if model.cos.is_meta:
        if model.lm_head.weight.is_meta:
            raise ValueError("The model's weights are on the meta device: load them before placing the model")
        model.reset_parameters()  # the RoPE cache of a model built on the meta device
        rope_dtype = dtype or model.lm_head.weight.dtype
    else:
        rope_dtype = dtype or model.cos.dtype
    first, last = devices[0], devices[-1]
    wte = model.transformer.wte.to(device=first, dtype=dtype)
    wte.register_forward_pre_hook(partial(_move_inputs, first), with_kwargs=True)
    block_devices = []
    for device, layers in zip(devices, layer_ranges(model.config.n_layer, len(devices))):
        for i in layers:
            block = model.transformer.h[i].to(device=device, dtype=dtype)
            block.register_forward_pre_hook(partial(_move_inputs, device), with_kwargs=True)
            block_devices.append(device)
    model.transformer.ln_f.to(device=last, dtype=dtype)
    model.lm_head.to(device=last, dtype=dtype)
    model.cos, model.sin = model.cos.to(last, rope_dtype), model.sin.to(last, rope_dtype)
    # GPT.set_kv_cache puts every cache on one device; an instance attribute takes its place for this model
    model.set_kv_cache = partial(_set_kv_cache_per_block, model, block_devices)
    if any(block.attn.kv_cache is not None for block in model.transformer.h):
        model.clear_kv_cache()  # a cache made before placement sits on the wrong devices
    return model


def _move_inputs(device: "torch.device", module: Any, args: tuple, kwargs: dict) -> tuple:
    """Forward pre-hook: the module's tensor arguments (also inside tuples, like the masks) on `device`."""
    return _to(args, device), _to(kwargs, device)


def _to(value: Any, device: "torch.device") -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def _set_kv_cache_per_block(
    model: "GPT",
    block_devices: List["torch.device"],
    batch_size: int,
    max_seq_length: Optional[int] = None,
    rope_cache_length: Optional[int] = None,
    device: Optional["torch.device"] = None,
    dtype: Optional["torch.dtype"] = None,
) -> None:
    """`GPT.set_kv_cache` with each block's cache on that block's device (`device` is ignored)."""
    import torch

    from litgpt.model import GPT

    # the shapes come from GPT.set_kv_cache itself, allocated nowhere (meta), then made on each block's device
    GPT.set_kv_cache(model, batch_size, max_seq_length, rope_cache_length, device=torch.device("meta"), dtype=dtype)
    for block, block_device in zip(model.transformer.h, block_devices):
        cache = block.attn.kv_cache.to_empty(device=block_device)
        cache.k.zero_()
        cache.v.zero_()


def load_sequentially(
    checkpoint_dir: Path, devices: Sequence[Union[str, "torch.device"]], precision: Optional[str] = None, quantize: Quantize = None
) -> "GPT":
    """The GPT of a checkpoint folder spread over `devices`, in eval mode, without the whole of it on any one device.

    The model is built on the meta device and given the memory-mapped weights of `lit_model.pth`; each piece
    is then read and copied to its device. LoRA and adapter folders are assembled on the CPU first.
    """
    import torch

    from litgpt.api import _check_quantize, _quantize_linears
    from litgpt.checkpoint import load_state_dict, model_state_dict, precision_dtype
    from litgpt.config import Config
    from litgpt.finetuned import finetuned_kind, load_finetuned
    from litgpt.model import GPT

    checkpoint_dir = Path(checkpoint_dir)
    devices = [torch.device(d) for d in devices]
    dtype = precision_dtype(precision, devices[0])
    if quantize is not None:
        for device in dict.fromkeys(devices):
            _check_quantize(quantize, device)
    if finetuned_kind(checkpoint_dir) is not None:
        if quantize is not None:
            raise ValueError("--quantize is not supported for a LoRA or adapter folder yet; merge it into a plain checkpoint first")
        model = load_finetuned(checkpoint_dir, "cpu")
    else:
        weights = checkpoint_dir / "lit_model.pth"
        if not weights.is_file():
            raise FileNotFoundError(f"No lit_model.pth in {str(checkpoint_dir)!r}; convert a Hugging Face folder with `litgpt convert_to_litgpt`")
        config = Config.from_checkpoint(checkpoint_dir)
        layer_ranges(config.n_layer, len(devices))  # a bad device count fails before any weight is read
        with torch.device("meta"):
            model = GPT(config)
        model.load_state_dict(model_state_dict(load_state_dict(weights)), assign=True)
    if quantize is not None:
        # bitsandbytes layers quantize when moved to their GPU, so each piece is quantized on its own device
        model = _quantize_linears(model.to(dtype=dtype), quantize, dtype)
        dtype = None
    return place_sequentially(model, devices, dtype).eval()


def generate_sequentially(
    checkpoint_dir: Path,
    prompt: str = "What food do llamas eat?",
    *,
    sys_prompt: Optional[str] = None,
    num_samples: int = 1,
    max_new_tokens: int = 50,
    top_k: Optional[int] = 50,
    top_p: float = 1.0,
    temperature: float = 0.8,
    quantize: Quantize = None,
    precision: Optional[str] = None,
    compile: bool = False,
    seed: int = 1234,
    accelerator: Accelerator = "auto",
    devices: Devices = "auto",
) -> None:
    """Complete a prompt with a model too large for one GPU: consecutive blocks go to consecutive GPUs.

    The GPUs take turns (one works while the others wait), so this is for models that do not fit one GPU;
    `litgpt generate_tp` makes them work at once.

    Args:
        checkpoint_dir: A checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files), or ORG/NAME
            under checkpoints/.
        prompt: The text to complete.
        sys_prompt: The system prompt, for prompt styles that have one.
        num_samples: How many completions to draw.
        max_new_tokens: The most tokens to generate per completion.
        top_k: Sample only among the k most likely tokens (1 is greedy).
        top_p: Sample only among the most likely tokens whose probabilities add up to top_p.
        temperature: Scales the logits: 0 is greedy, higher is more random.
        quantize: bitsandbytes quantization of the weights (CUDA only): bnb.nf4, bnb.nf4-dq, bnb.fp4, bnb.fp4-dq, bnb.int8.
        precision: bf16-true, 16-true or 32-true; default bf16 on a GPU that has it, else 32-true.
        compile: Compile the decoding step with torch.compile (slower start, faster decoding).
        seed: The random seed.
        accelerator: cuda, cpu, or auto (cuda when there is a GPU). On the CPU the pieces all run on the CPU,
            which checks a setup without GPUs.
        devices: How many devices to spread the blocks over (at most the number of layers); auto is every visible GPU.
    """
    import torch

    from litgpt.api import LLM
    from litgpt.generate.cli import print_completions
    from litgpt.generate.core import fast_decode_step
    from litgpt.generate.devices import pick_devices

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    chosen = pick_devices(accelerator, devices)
    llm = LLM.load(str(checkpoint_dir), distribute=None)  # the tokenizer and prompt style; the model comes next
    llm.model = load_sequentially(llm.checkpoint_dir, chosen, precision=precision, quantize=quantize)
    llm.quantize = quantize
    llm.decode_step = fast_decode_step(compile)  # the plain (or compiled) step for a model over several devices
    print_completions(
        llm, prompt, sys_prompt=sys_prompt, num_samples=num_samples, max_new_tokens=max_new_tokens, top_k=top_k,
        top_p=top_p, temperature=temperature, seed=seed,
    )
    used = [d for d in dict.fromkeys(chosen) if d.type == "cuda"]
    if used:
        memory = ", ".join(f"{torch.cuda.max_memory_allocated(d) / 1e9:.02f} GB on {d}" for d in used)
        print(f"Memory used: {memory}", file=sys.stderr)
