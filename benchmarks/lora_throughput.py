"""LoRA and QLoRA finetuning-step throughput of a registry model on random tokens: tokens/s and peak memory.

    python benchmarks/lora_throughput.py --cases Llama-3.2-1B:8 Llama-3.1-8B:2 --compile both \
        --qlora_model Llama-3.1-8B --qlora_micro_batch 2 4

A step is what the training loop does: forward with the loss computed from the hidden states
(`model(x, targets=y)`, litgpt/loss.py), backward and fused AdamW over the LoRA weights only. LoRA (rank 8 on
the query, key, value, projection, MLP and head layers by default) comes from `litgpt.lora.add_lora`; the base
weights are random, bf16-true; eager or torch.compile'd. QLoRA quantizes the frozen base to bitsandbytes nf4 the way
`litgpt finetune_lora --quantize bnb.nf4` does: Lightning's `BitsandbytesPrecision` through `Fabric.setup`.
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch._functorch.config

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import cuda_time_ms, emit, profile_kernels, table  # noqa: E402

from litgpt.config import Config  # noqa: E402
from litgpt.loss import linear_cross_entropy  # noqa: E402
from litgpt.lora import add_lora, mark_only_lora_as_trainable  # noqa: E402
from litgpt.model import GPT  # noqa: E402

LAYERS = ("query", "key", "value", "projection", "mlp", "head")


def build(model_name: str, seq: int, layers: list, r: int, dropout: float, quantize: str):
    """The LoRA model (random base weights, bf16) on the GPU, and what calls it: itself or Fabric's wrapper."""
    config = Config.from_name(model_name, block_size=max(seq, Config.from_name(model_name).block_size))
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = GPT(config)
            model = add_lora(model, r=r, alpha=2 * r, dropout=dropout, **{name: name in layers for name in LAYERS})
    finally:
        torch.set_default_dtype(default)
    model.max_seq_length = seq
    mark_only_lora_as_trainable(model)
    fabric = None
    if quantize != "none":
        import lightning as L
        from lightning.fabric.plugins import BitsandbytesPrecision

        # what litgpt/train/finetune.py does for --quantize: the plugin swaps nn.Linear for bnb layers in
        # Fabric.setup and the weights are quantized as they land on the GPU
        fabric = L.Fabric(devices=1, accelerator="cuda", precision=None, plugins=BitsandbytesPrecision(quantize, torch.bfloat16))
        model = fabric.setup(model)
    torch.cuda.empty_cache()
    return config, model, fabric


def measure(config: Config, model, fabric, micro_batch: int, seq: int, iters: int, compile: bool, loss_compiled: bool = True,
            profile: int = 0, snapshot: str = "") -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
    if fabric is not None:
        optimizer = fabric.setup_optimizers(optimizer)
    x = torch.randint(0, config.vocab_size, (micro_batch, seq + 1), device="cuda")

    forward = torch.compile(model) if compile else model
    if compile and not loss_compiled:  # the blocked loss runs eagerly after the compiled layers (a graph break)
        import litgpt.model

        litgpt.model.linear_cross_entropy = torch.compiler.disable(linear_cross_entropy)

    def step():
        loss = forward(x[:, :-1], targets=x[:, 1:])
        if fabric is not None:
            fabric.backward(loss)
        else:
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    torch.cuda.reset_peak_memory_stats()
    try:
        ms = statistics.median(cuda_time_ms(step, iters=iters, warmup=4 if compile else 2))
        peak_gib = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        if profile:
            profile_kernels(step, profile, label=f"{config.name} LoRA {micro_batch}x{seq} compile={compile} loss_compiled={loss_compiled} step")
        if snapshot:  # what is allocated when, with its stack (torch.cuda.memory._snapshot's format; see pytorch.org/memory_viz)
            torch.cuda.memory._record_memory_history(max_entries=1_000_000)
            step()
            torch.cuda.synchronize()
            torch.cuda.memory._dump_snapshot(snapshot)
            torch.cuda.memory._record_memory_history(enabled=None)
        return dict(step_ms=round(ms, 1), tokens_per_s=round(micro_batch * seq / (ms / 1e3)), peak_gib=peak_gib)
    finally:
        import litgpt.model

        litgpt.model.linear_cross_entropy = linear_cross_entropy
        del optimizer, x
        for p in params:
            p.grad = None
        torch.cuda.empty_cache()


def run(model_name: str, quantize: str, micro_batches: list, compiles: list, args) -> list:
    cases = []
    try:
        config, model, fabric = build(model_name, args.seq, args.layers, args.r, args.dropout, quantize)
    except torch.OutOfMemoryError:
        case = dict(bench="lora_throughput", model=model_name, quantize=quantize, error="OOM while building")
        emit(case)
        return [case]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    weights_gib = round(torch.cuda.memory_allocated() / 2**30, 2)
    variants = [(c, loss) for c in compiles for loss in (args.loss if c else ["compiled"])]
    for mb, (compile, loss) in [(mb, v) for mb in micro_batches for v in variants]:
        case = dict(bench="lora_throughput", model=model_name, quantize=quantize, compile=compile, r=args.r,
                    layers=",".join(args.layers), seq=args.seq, micro_batch=mb, trainable=trainable, weights_gib=weights_gib)
        if compile and loss != "compiled":
            case["loss"] = loss
        if compile and args.memory_budget < 1:
            case["memory_budget"] = args.memory_budget
        try:
            with torch._functorch.config.patch(activation_memory_budget=args.memory_budget):
                case.update(measure(config, model, fabric, mb, args.seq, args.iters, compile, loss == "compiled", args.profile,
                                    args.memory_snapshot and f"{args.memory_snapshot}-{len(cases)}.pickle"))
        except torch.OutOfMemoryError:
            case["error"] = "OOM"
            torch.cuda.empty_cache()
        emit(case)
        cases.append(case)
    del model, fabric
    torch.cuda.empty_cache()
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=["Llama-3.2-1B:8", "Llama-3.1-8B:2"], help="LoRA cases as MODEL:MICRO_BATCH")
    parser.add_argument("--compile", choices=["no", "yes", "both"], default="both", help="torch.compile the LoRA cases")
    parser.add_argument("--qlora_model", default="Llama-3.1-8B", help="the QLoRA case's registry model ('' to skip)")
    parser.add_argument("--qlora_micro_batch", type=int, nargs="+", default=[4])
    parser.add_argument("--quantize", default="nf4", choices=["nf4", "nf4-dq", "fp4", "fp4-dq"], help="bitsandbytes mode of the QLoRA case")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--r", type=int, default=8, help="LoRA rank (alpha = 2 r)")
    parser.add_argument("--dropout", type=float, default=0.05)
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=LAYERS)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--memory_budget", type=float, default=1.0,
                        help="torch.compile's activation memory budget (below 1 it recomputes cheap activations to save memory)")
    parser.add_argument("--loss", nargs="+", choices=["compiled", "eager"], default=["compiled"],
                        help="with --compile: the blocked loss compiled (a graph of its own, after the layers), or run eagerly after them")
    parser.add_argument("--profile", type=int, default=0, help="profile this many steps of each case and print where their GPU time goes")
    parser.add_argument("--memory_snapshot", default="", help="record one step of each case into PATH-<case>.pickle (torch.cuda.memory snapshot)")
    args = parser.parse_args()
    emit(dict(bench="device", name=torch.cuda.get_device_name(), torch=torch.__version__))
    cases = []
    compiles = {"no": [False], "yes": [True], "both": [False, True]}[args.compile]
    for spec in args.cases:
        name, _, mb = spec.rpartition(":")
        cases += run(name, "none", [int(mb)], compiles, args)
    if args.qlora_model:
        cases += run(args.qlora_model, args.quantize, args.qlora_micro_batch, [False], args)
    table(cases, ["model", "quantize", "compile", "loss", "micro_batch", "seq", "trainable", "weights_gib", "step_ms", "tokens_per_s", "peak_gib"])


if __name__ == "__main__":
    main()
