"""Sequential placement: run a model too large for one GPU, its blocks spread over several.

    tokens ─► wte, h[0 .. a)  ─►  h[a .. b)  ─►  ...  ─►  h[.. n_layer), ln_f, lm_head ─► logits
              device 0            device 1                 device N-1 (also the RoPE cache, tokens, logits)

`place_sequentially` is a transform of the plain GPT: it moves contiguous runs of blocks to the devices and
hooks each block to move its inputs (activations, cos/sin, positions, masks) to its own device, so only
activations cross a device boundary. Each block's KV cache lives beside the block. The devices work one
after the other (no pipelining): this buys memory, not speed.
"""

from functools import partial
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from litgpt.quantize import Quantize


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
    block's cache on that block's device (its default). The weights may be memory-mapped CPU tensors: each piece is copied
    to its device (and cast to `dtype`, when given) on its own.
    """
    import torch

    from litgpt.model import GPT

    devices = [torch.device(d) for d in devices]
    if not devices:
        raise ValueError("place_sequentially needs at least one device")
    if any(getattr(hook, "func", None) is _move_inputs for hook in model.transformer.wte._forward_pre_hooks.values()):
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
    for device, layers in zip(devices, layer_ranges(model.config.n_layer, len(devices))):
        for i in layers:
            block = model.transformer.h[i].to(device=device, dtype=dtype)
            block.register_forward_pre_hook(partial(_move_inputs, device), with_kwargs=True)
    model.transformer.ln_f.to(device=last, dtype=dtype)
    model.lm_head.to(device=last, dtype=dtype)
    model.cos, model.sin = model.cos.to(last, rope_dtype), model.sin.to(last, rope_dtype)
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


def load_sequentially(
    checkpoint_dir: Path, devices: Sequence[Union[str, "torch.device"]], precision: Optional[str] = None, quantize: Quantize = None
) -> "GPT":
    """The GPT of a checkpoint folder spread over `devices`, in eval mode, without the whole of it on any one device.

    The model is built on the meta device and given the memory-mapped weights of `lit_model.pth`; each piece
    is then read and copied to its device. LoRA and adapter folders are assembled on the CPU first.
    """
    import torch

    from litgpt.checkpoint import load_state_dict, model_state_dict, precision_dtype
    from litgpt.config import Config
    from litgpt.finetuned import finetuned_kind, load_finetuned
    from litgpt.model import GPT
    from litgpt.quantize import check_quantize, quantize_linears

    checkpoint_dir = Path(checkpoint_dir)
    devices = [torch.device(d) for d in devices]
    dtype = precision_dtype(precision, devices[0])
    if quantize is not None:
        for device in dict.fromkeys(devices):
            check_quantize(quantize, device)
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
        model = quantize_linears(model.to(dtype=dtype), quantize, dtype)
        dtype = None
    return place_sequentially(model, devices, dtype).eval()
