"""Sequence packing: real (non-padding) training tokens per second, packed rows against padded batches.

    python benchmarks/packing_throughput.py                              # H200: Llama-3.2-1B, LoRA, 2048 tokens
    python benchmarks/packing_throughput.py --model pythia-14m --toy     # CPU smoke check at toy size

Samples have an Alpaca-like length distribution (log-normal, median 180 tokens, 10% past 512; the prompt about
60% of each sample and masked from the loss, as --data.mask_prompt does); their tokens are random. Unpacked, each
micro-batch is `micro_batch_size` shuffled samples padded to the longest (litgpt.data.sft's collate); packed, it
is `micro_batch_size` rows of --max_seq_length tokens filled best fit (litgpt.data.packing) with the document
mask. A step is the loop's: forward with the loss from the hidden states (`next_token_loss`), backward, AdamW
over the LoRA weights (rank 8 on every linear layer but the head). Both sides keep the same micro_batch_size, as
a user switching --data.packing on would. Tokens/s counts only tokens of samples, never padding. The document
mask is a boolean mask through SDPA (PyTorch's memory-efficient kernel on CUDA; no flash kernel takes it).
"""

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import emit  # noqa: E402

from litgpt.config import Config  # noqa: E402
from litgpt.data.packing import PackedDataset, get_packed_collate_fn  # noqa: E402
from litgpt.data.sft import get_sft_collate_fn  # noqa: E402
from litgpt.lora import add_lora, mark_only_lora_as_trainable  # noqa: E402
from litgpt.model import GPT  # noqa: E402
from litgpt.train.loop import next_token_loss  # noqa: E402

IGNORE = -100


def alpaca_like(n: int, vocab: int, max_len: int, seed: int = 0) -> list:
    """`n` samples {"input_ids", "labels"} with Alpaca-like lengths, the prompt part masked."""
    rng = random.Random(seed)
    samples = []
    for _ in range(n):
        length = max(16, min(max_len, int(rng.lognormvariate(5.19, 0.75))))  # median e^5.19 ~ 180
        ids = torch.randint(0, vocab, (length,))
        labels = ids.clone()
        labels[: int(0.6 * length)] = IGNORE
        samples.append({"input_ids": ids, "labels": labels})
    return samples


def batches(samples: list, packed: bool, micro_batch: int, max_len: int, seed: int = 0) -> list:
    """The micro-batches of one epoch, each with "real": how many of its input positions hold sample tokens."""
    if packed:
        rows = PackedDataset(samples, max_len, IGNORE)
        items, collate = [rows[i] for i in range(len(rows))], get_packed_collate_fn(ignore_index=IGNORE)
    else:
        items, collate = list(samples), get_sft_collate_fn(max_len, ignore_index=IGNORE)
    random.Random(seed).shuffle(items)
    out = []
    for i in range(0, len(items), micro_batch):
        batch = collate(items[i : i + micro_batch])
        T = batch["input_ids"].size(1)
        if packed:
            batch["real"] = int((batch["document_ids"][:, :-1] != 0).sum())
        else:  # a sample of L tokens in a row of T fills min(L, T - 1) of the T - 1 input positions
            batch["real"] = sum(min(len(item["input_ids"]), T - 1) for item in items[i : i + micro_batch])
        out.append(batch)
    return out


def run(model: GPT, data: list, steps: int, warmup: int, device: torch.device) -> float:
    """Real tokens per second over `steps` micro-batches after `warmup`."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    seq_len = model.max_seq_length

    def step(batch: dict) -> None:
        batch = {k: v.to(device) for k, v in batch.items() if k != "real"}
        next_token_loss(model, batch, seq_len, IGNORE).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for k in range(warmup):
        step(data[k % len(data)])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start, tokens = time.perf_counter(), 0
    for k in range(steps):
        batch = data[(warmup + k) % len(data)]
        tokens += batch["real"]
        step(batch)
    sync()
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="Llama-3.2-1B")
    parser.add_argument("--max_seq_length", type=int, default=2048)
    parser.add_argument("--micro_batch_size", type=int, default=4, help="packed rows per step; unpacked samples per step")
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--toy", action="store_true", help="a two-layer model and short rows, for a CPU smoke check")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    overrides = dict(n_layer=2, n_embd=64, n_head=4, n_query_groups=4, intermediate_size=128, block_size=256) if args.toy else {}
    if args.toy:
        args.max_seq_length, args.samples, args.steps = 256, 64, 3
    config = Config.from_name(args.model, **overrides)
    config.block_size = max(config.block_size, args.max_seq_length)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device(device):
        model = GPT(config).to(dtype)
    model = add_lora(model, r=8, alpha=16, query=True, key=True, value=True, projection=True, mlp=True)
    mark_only_lora_as_trainable(model)
    model.max_seq_length = args.max_seq_length - 1  # a row of max_seq_length tokens gives that many minus one inputs

    samples = alpaca_like(args.samples, config.vocab_size, args.max_seq_length)
    results = {}
    for packed in (False, True):
        data = batches(samples, packed, args.micro_batch_size, args.max_seq_length)
        tokens_per_s = run(model, data, args.steps, warmup=2, device=device)
        fill = sum(b["real"] for b in data) / sum(b["input_ids"][:, :-1].numel() for b in data)
        results[packed] = tokens_per_s
        emit({"bench": "packing_throughput", "model": args.model, "packed": packed, "device": str(device),
              "max_seq_length": args.max_seq_length, "micro_batch_size": args.micro_batch_size,
              "real_tokens_per_s": round(tokens_per_s, 1), "non_padding_fraction": round(fill, 3), "micro_batches": len(data)})
    emit({"bench": "packing_throughput", "model": args.model, "speedup_packed_over_padded": round(results[True] / results[False], 2)})


if __name__ == "__main__":
    main()
