"""Renaming and reshaping weights between the Hugging Face layout and ours, one tensor at a time, either way."""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from litgpt.checkpoint import CheckpointError
from litgpt.config import Config
from litgpt.convert.architectures import Architecture

QKV = "transformer.h.{l}.attn.qkv"


@dataclass(frozen=True)
class Rule:
    """HF modules <-> our modules. With several on one side, they are concatenated (dim 0) into the other side."""

    hf: Tuple[str, ...]
    lit: Tuple[str, ...]
    interleaved: bool = False  # the one HF qkv module is [q.. k v] per query group


def rules(arch: Architecture, config: Config) -> List[Rule]:
    """Every weight rule of `arch` that applies to `config`."""
    modules = dict(arch.modules)
    for when, extra in arch.variants:
        if all(getattr(config, name) == value for name, value in when.items()):
            modules.update(extra)
    out = [Rule((hf,), (lit,)) for hf, lit in modules.items()]
    out.append(Rule(arch.qkv, (QKV,), interleaved=arch.qkv_layout == "interleaved"))
    if arch.gate_up is not None:
        out.append(Rule((arch.gate_up,), ("transformer.h.{l}.mlp.fc_1", "transformer.h.{l}.mlp.fc_2")))
    return out


def split_sizes(parts: Tuple[str, ...], config: Config) -> Optional[Tuple[int, ...]]:
    """Row counts of each part when one module splits into `parts`: [q | k | v], else equal halves (None)."""
    if len(parts) == 3:
        hs = config.head_size
        return (config.n_head * hs, config.n_query_groups * hs, config.n_query_groups * hs)
    return None


def template(key: str) -> Tuple[str, Tuple[str, ...], str]:
    """`model.layers.3.mlp.experts.5.w1.weight` -> (`model.layers.{l}.mlp.experts.{e}.w1`, ("3", "5"), "weight")."""
    module, _, param = key.rpartition(".")
    parts, indices = [], []
    for part in module.split("."):
        if part.isdigit():
            parts.append("{l}" if not indices else "{e}")
            indices.append(part)
        else:
            parts.append(part)
    return ".".join(parts), tuple(indices), param


def fill(module_template: str, indices: Tuple[str, ...], param: str) -> str:
    names = dict(zip(("l", "e"), indices))
    return f"{module_template.format(**names)}.{param}"




class Translator:
    """Turns each source (name, tensor) into the target ones; tensors that must be merged wait for their partners.

    `to_lit=True` reads HF names and yields ours; `to_lit=False` the other way round.
    """

    def __init__(self, arch: Architecture, config: Config, to_lit: bool) -> None:
        self.arch, self.config, self.to_lit = arch, config, to_lit
        self.index: Dict[str, Tuple[Rule, int]] = {}
        for rule in rules(arch, config):
            for slot, module in enumerate(rule.hf if to_lit else rule.lit):
                self.index.setdefault(module, (rule, slot))  # several HF names for one of ours: the first is written
        self.pending: Dict[Tuple[Rule, Tuple[str, ...], str], Dict[int, Any]] = {}

    def __call__(self, name: str, tensor: Any) -> List[Tuple[str, Any]]:
        module, indices, param = template(name)
        if module not in self.index:
            side = self.arch.hf_class if self.to_lit else "LitGPT"
            raise CheckpointError(f"unexpected weight {name!r}: no {side} module of this name is known (an unsupported variant?)")
        rule, slot = self.index[module]
        source, target = (rule.hf, rule.lit) if self.to_lit else (rule.lit, rule.hf)
        if len(source) > 1:
            parts = self.pending.setdefault((rule, indices, param), {})
            parts[slot] = tensor
            if len(parts) < len(source):
                return []
            del self.pending[(rule, indices, param)]
            import torch

            tensor = torch.cat([parts[i] for i in range(len(source))])
        if rule.interleaved:
            tensor = deinterleave(tensor, self.config) if self.to_lit else interleave(tensor, self.config)
        if len(target) == 1:
            return [(fill(target[0], indices, param), tensor)]
        sizes = split_sizes(target, self.config)
        pieces = tensor.split(sizes) if sizes else tensor.chunk(len(target))
        return [(fill(module, indices, param), piece) for module, piece in zip(target, pieces)]

    def finish(self) -> None:
        """Fail if some tensor still waits for partners that never came."""
        for (rule, indices, param), parts in self.pending.items():
            source = rule.hf if self.to_lit else rule.lit
            missing = [fill(m, indices, param) for slot, m in enumerate(source) if slot not in parts]
            raise CheckpointError(f"missing weights: {', '.join(missing)}")


def deinterleave(param: Any, config: Config) -> Any:
    """[q.. k v] per query group (GPT-NeoX, Falcon) -> [q.. | k.. | v..]."""
    from litgpt.model import deinterleave_qkv

    return deinterleave_qkv(param, config)


def interleave(param: Any, config: Config) -> Any:
    """[q.. | k.. | v..] -> [q.. k v] per query group, the inverse of `deinterleave`."""
    import torch

    hs, ng = config.head_size, config.n_query_groups
    rest = param.shape[1:]
    q, k, v = param.split(split_sizes(("q", "k", "v"), config))
    q = q.reshape(ng, config.n_head // ng, hs, *rest)  # (groups, queries per group, hs, ...)
    k, v = k.reshape(ng, 1, hs, *rest), v.reshape(ng, 1, hs, *rest)
    return torch.cat((q, k, v), dim=1).reshape(-1, *rest)
