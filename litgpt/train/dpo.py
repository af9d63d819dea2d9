"""`litgpt finetune_dpo`: Direct Preference Optimization as a `Method` of the one training loop.

    batch (2B, T): B chosen rows, B rejected rows          (litgpt/data/preference.py)
      policy    ─► log p(response | prompt), summed over the response tokens ─┐
      reference ─► the same, without gradients                                ├─► -logsigmoid(beta · (Δchosen - Δrejected))
                   (LoRA: the same weights, adapters off; full: a frozen copy)┘    Δ = policy - reference log-prob

The loss and the rewards (beta · Δ) are those of Rafailov et al. (2023) and TRL's `DPOTrainer` (loss_type
"sigmoid"). Per step the log carries the loss, rewards/margins, rewards/accuracies, rewards/chosen,
rewards/rejected, logps/chosen and logps/rejected.
"""

import copy
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Literal, Optional, Tuple

from litgpt.train.finetune import BASE, LORA, TRAINING, _command
from litgpt.train.loop import Method, split_batch

if TYPE_CHECKING:
    import torch
    from lightning import Fabric


@dataclass
class DPOArgs:
    """DPO's settings (`--dpo.*`)."""

    beta: float = 0.1
    """How far the policy may move from the reference: the scale of the log-probability ratios in the loss"""


def sequence_logps(model: Any, input_ids: "torch.Tensor", targets: "torch.Tensor", ignore_index: int = -100) -> "torch.Tensor":
    """The summed log-probability of each row's targets (those not `ignore_index`): (B,)."""
    import torch

    logits = model(input_ids).float()  # (B, T, vocab)
    mask = targets != ignore_index
    picked = torch.gather(logits.log_softmax(-1), 2, targets.masked_fill(~mask, 0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def dpo_loss(chosen: "torch.Tensor", rejected: "torch.Tensor", ref_chosen: "torch.Tensor", ref_rejected: "torch.Tensor",
             beta: float) -> Tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """Per pair: the DPO loss, the chosen reward and the rejected reward (beta · log-ratio to the reference)."""
    import torch.nn.functional as F

    chosen_rewards, rejected_rewards = beta * (chosen - ref_chosen), beta * (rejected - ref_rejected)
    return -F.logsigmoid(chosen_rewards - rejected_rewards), chosen_rewards, rejected_rewards


@contextmanager
def adapters_off(model: Any) -> Iterator[None]:
    """Run the model as its base: every LoRA layer's update scaled by zero (no second copy of the weights)."""
    from litgpt.lora import LoRALinear

    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    scalings = [m.scaling for m in layers]
    for m in layers:
        m.scaling = 0.0
    try:
        yield
    finally:
        for m, s in zip(layers, scalings):
            m.scaling = s


class DPO(Method):
    """DPO over a finetuning method (`base`: LoRA or full), which still decides what trains and what is saved."""

    def __init__(self, base: Method, beta: float = 0.1) -> None:
        self.base, self.beta = base, beta
        self.reference: Optional[Any] = None
        self._sums: List[Any] = []

    name = property(lambda self: f"dpo-{self.base.name}")
    weights_file = property(lambda self: self.base.weights_file)
    base_weights = property(lambda self: self.base.base_weights, lambda self, path: setattr(self.base, "base_weights", path))

    def transform(self, model: Any) -> Any:
        model = self.base.transform(model)
        is_real = next(model.parameters()).device.type != "meta"  # not the meta copies that count parameters
        if self.base.name == "full" and is_real:
            self.reference = copy.deepcopy(model).requires_grad_(False).eval()
        return model

    def is_trainable(self, name: str) -> bool:
        return self.base.is_trainable(name)

    def is_saved(self, name: str) -> bool:
        return self.base.is_saved(name)

    def finish(self, fabric: "Fabric", model: Any, folder: Path) -> None:
        self.base.finish(fabric, model, folder)

    def loss(self, model: Any, batch: Any, seq_len: int, ignore_index: int) -> "torch.Tensor":
        import torch

        input_ids, targets = split_batch(batch, seq_len)
        logps = sequence_logps(model, input_ids, targets, ignore_index)
        with torch.no_grad():
            ref_logps = self.reference_logps(model, input_ids, targets, ignore_index)
        chosen, rejected = logps.chunk(2)
        ref_chosen, ref_rejected = ref_logps.chunk(2)
        losses, chosen_rewards, rejected_rewards = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.beta)
        if torch.is_grad_enabled():  # training, not validation
            stats = torch.stack([
                (chosen_rewards - rejected_rewards).mean(), (chosen_rewards > rejected_rewards).float().mean(),
                chosen_rewards.mean(), rejected_rewards.mean(), chosen.mean(), rejected.mean(),
            ]).detach()
            self._sums.append(stats)
        return losses.mean()

    def reference_logps(self, model: Any, input_ids: "torch.Tensor", targets: "torch.Tensor", ignore_index: int) -> "torch.Tensor":
        if self.reference is None:  # LoRA and adapters: the same model with its additions off
            with adapters_off(model):
                return sequence_logps(model, input_ids, targets, ignore_index)
        param = next(p for p in model.parameters())
        self.reference.to(device=param.device, dtype=param.dtype)
        precision = getattr(getattr(model, "_strategy", None), "precision", None)  # Fabric's autocast, as for the policy
        with precision.forward_context() if precision is not None else nullcontext():
            return sequence_logps(self.reference, input_ids, targets, ignore_index)

    def metrics(self, fabric: "Fabric") -> Dict[str, float]:
        import torch

        if not self._sums:
            return {}
        mean = fabric.all_reduce(torch.stack(self._sums).mean(0), reduce_op="mean").tolist()
        self._sums = []
        names = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected")
        return dict(zip(names, mean))


@_command(("checkpoint_dir", "out_dir", "method", "dpo") + BASE[2:] + LORA + TRAINING, defaults={"out_dir": Path("out/finetune/dpo"), "compile": False},
          own={"method": (Literal["lora", "full"], "lora", "What trains: lora (low-rank updates; the reference is the same "
                          "model with them off) or full (every weight; the reference is a frozen copy, twice the weights in memory)."),
               "dpo": (DPOArgs, DPOArgs(), "DPO's settings (`--dpo.beta`).")},
          helps={"quantize": 'Quantize the frozen base weights with bitsandbytes (LoRA only; one CUDA GPU, a "-true" precision).',
                 "data": "The preference pairs: `--data Preference --data.json_path prefs.json`.",
                 "eval": "Validation arguments (`--eval.*`; the validation loss is the DPO loss).",
                 "compile": "Compile the model with torch.compile (off by default: the policy and the reference are two passes of one model)."})
def finetune_dpo(args: SimpleNamespace) -> None:
    """Align a model with preference pairs by DPO: it learns to prefer each chosen answer over the rejected one,
    relative to the frozen base model (tutorials/dpo.md)."""
    from litgpt.data.preference import Preference
    from litgpt.prompts import PromptStyle
    from litgpt.train import finetune
    from litgpt.train.methods import LoRA, Full

    data = args.data
    if not isinstance(data, Preference):
        raise ValueError("finetune_dpo trains on preference pairs: pass --data Preference --data.json_path prefs.json")
    if not args.dpo.beta > 0:
        raise ValueError(f"--dpo.beta must be positive, got {args.dpo.beta}")
    if args.method == "full" and args.quantize is not None:
        raise ValueError("--quantize applies to --method lora (the frozen base weights); full finetuning trains them")
    base = LoRA.from_flags(vars(args)) if args.method == "lora" else Full()
    run = finetune.FinetuneRun.from_flags(DPO(base, args.dpo.beta), vars(args))
    run.checkpoint_dir = finetune._base_folder(Path(args.checkpoint_dir), args.access_token)
    if data.prompt_style is None:
        data.prompt_style = PromptStyle.from_checkpoint(run.checkpoint_dir)
    finetune._finetune(run)
