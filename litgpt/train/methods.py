"""The finetuning methods, as `Method`s of the one training loop: what the model becomes, what trains, what is saved.

    method       transform                     trains                         final/ holds
    ─────────    ──────────────────────────    ───────────────────────────    ─────────────────────────────────────
    full         none                          everything                     lit_model.pth
    lora         add_lora                      lora_A, lora_B                 lit_model.pth.lora, merged lit_model.pth
    adapter      add_adapter                   adapter_wte, gating_factor     lit_model.pth.adapter, base lit_model.pth
    adapter_v2   add_adapter(v2=True)          + adapter_bias/scale, norms    lit_model.pth.adapter_v2, base lit_model.pth
"""

import os
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict

from litgpt.train.loop import Method


Full = Method


@dataclass
class LoRA(Method):
    name: str = "lora"
    weights_file: str = "lit_model.pth.lora"
    r: int = 8
    alpha: float = 16
    dropout: float = 0.05
    query: bool = True
    key: bool = False
    value: bool = True
    projection: bool = False
    mlp: bool = False
    head: bool = False

    @classmethod
    def from_flags(cls, flags: Dict[str, Any]) -> "LoRA":
        """The LoRA of a command's `lora_*` flags; a rank below 1, or no layer covered, is a one-line error."""
        settings = {f.name: flags[f"lora_{f.name}"] for f in fields(cls) if f"lora_{f.name}" in flags}
        if settings["r"] < 1:
            raise ValueError(f"--lora_r must be at least 1, got {settings['r']}")
        if not any(settings[name] for name in ("query", "key", "value", "projection", "mlp", "head")):
            raise ValueError("LoRA covers no layer: enable at least one of --lora_query/key/value/projection/mlp/head")
        return cls(**settings)

    def transform(self, model: Any) -> Any:
        from litgpt.lora import add_lora

        return add_lora(
            model, r=self.r, alpha=self.alpha, dropout=self.dropout, query=self.query, key=self.key, value=self.value,
            projection=self.projection, mlp=self.mlp, head=self.head,
        )

    def is_trainable(self, name: str) -> bool:
        from litgpt.lora import lora_filter

        return lora_filter(name)

    is_saved = is_trainable

    def finish(self, fabric: Any, model: Any, folder: Path) -> None:
        """Merge the saved LoRA weights into the base weights read from disk (not the training copy, which may
        be quantized or sharded) and write them as lit_model.pth."""
        if fabric.is_global_zero and self.base_weights is not None:
            from litgpt.finetuned import merge_into_base

            merge_into_base(self.base_weights, folder / self.weights_file, folder / "lit_model.pth", model_config(model), self.settings())
        fabric.barrier()

    def settings(self) -> dict:
        return dict(r=self.r, alpha=self.alpha, query=self.query, key=self.key, value=self.value,
                    projection=self.projection, mlp=self.mlp, head=self.head)


@dataclass
class Adapter(Method):
    name: str = "adapter"
    weights_file: str = "lit_model.pth.adapter"
    prompt_length: int = 10
    start_layer: int = 2
    v2: bool = field(default=False, init=False)

    def transform(self, model: Any) -> Any:
        from litgpt.adapter import add_adapter

        # LitGPT starts at layer 2; a model of two layers or fewer (a test model) gets its last layer adapted
        start = min(self.start_layer, model.config.n_layer - 1)
        return add_adapter(model, prompt_length=self.prompt_length, start_layer=start, v2=self.v2)

    def is_trainable(self, name: str) -> bool:
        from litgpt.adapter import adapter_filter, adapter_v2_filter

        return adapter_v2_filter(name) if self.v2 else adapter_filter(name)

    is_saved = is_trainable

    def finish(self, fabric: Any, model: Any, folder: Path) -> None:
        """Put the base weights next to the adapter weights (a hard link where possible): the adapter file then
        overrides what it trained (for v2, the norms) when the folder is loaded."""
        if fabric.is_global_zero and self.base_weights is not None:
            target = folder / "lit_model.pth"
            try:
                os.link(self.base_weights, target)
            except OSError:
                shutil.copy2(self.base_weights, target)
        fabric.barrier()


@dataclass
class AdapterV2(Adapter):
    name: str = "adapter_v2"
    weights_file: str = "lit_model.pth.adapter_v2"
    v2: bool = field(default=True, init=False)


def model_config(model: Any) -> Any:
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    return inner.config
