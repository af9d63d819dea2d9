"""bitsandbytes quantization of a model's linear layers for inference: the modes, their check, the transform."""

from typing import TYPE_CHECKING, Literal, Optional

if TYPE_CHECKING:
    import torch

    from litgpt.model import GPT

QUANTIZE_MODES = ("bnb.nf4", "bnb.nf4-dq", "bnb.fp4", "bnb.fp4-dq", "bnb.int8")
Quantize = Optional[Literal["bnb.nf4", "bnb.nf4-dq", "bnb.fp4", "bnb.fp4-dq", "bnb.int8"]]


def check_quantize(quantize: str, device: "torch.device") -> None:
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"Unknown quantize mode {quantize!r}; choose one of {', '.join(QUANTIZE_MODES)}")
    if device.type != "cuda":
        raise ValueError(f"--quantize {quantize} needs a CUDA GPU (bitsandbytes); this runs on {device.type}")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ValueError(f"--quantize {quantize} needs bitsandbytes: pip install bitsandbytes") from None


def quantize_linears(model: "GPT", quantize: str, dtype: "torch.dtype") -> "GPT":
    """Replace the blocks' nn.Linear layers by bitsandbytes ones; they quantize when moved to the GPU.

    The embedding and lm_head stay in `dtype`, as quality suffers most there.
    """
    import bitsandbytes as bnb
    from torch import nn

    mode = quantize[len("bnb.") :]
    for block in model.transformer.h:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is not nn.Linear:
                    continue
                has_bias = child.bias is not None
                if mode == "int8":
                    layer = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=has_bias, has_fp16_weights=False, threshold=6.0)
                    layer.weight = bnb.nn.Int8Params(child.weight.data.to(dtype), requires_grad=False, has_fp16_weights=False)
                else:
                    quant_type, double_quant = mode.split("-")[0], mode.endswith("-dq")
                    layer = bnb.nn.Linear4bit(
                        child.in_features, child.out_features, bias=has_bias, compute_dtype=dtype,
                        compress_statistics=double_quant, quant_type=quant_type,
                    )
                    layer.weight = bnb.nn.Params4bit(
                        child.weight.data.to(dtype), requires_grad=False, compress_statistics=double_quant, quant_type=quant_type
                    )
                if has_bias:
                    layer.bias = nn.Parameter(child.bias.data.to(dtype), requires_grad=False)
                setattr(parent, name, layer)
    return model
