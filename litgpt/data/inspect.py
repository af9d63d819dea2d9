"""`--data.inspect N`: the first N training samples as the model sees them, and a summary of the whole set.

    sample 0 · 23 tokens (trained 9, masked 14) · not truncated
    <bos>Below is an instruction ... ### Response:
    [[Hello world!<eos>]]                     trained tokens: green on a terminal, in [[ ]] when piped

A token is trained when it is a target of the loss: its label is not ignore_index (the first token of a sample
is never a target: no token comes before it).
"""

import sys
from typing import Any, List, Optional, TextIO, Tuple

GREEN, DIM, RESET = "\033[1;32m", "\033[2m", "\033[0m"


def trained_mask(labels: Any, ignore_index: int) -> List[bool]:
    """Whether each token of a sample is a target of the loss."""
    return [t > 0 and int(label) != ignore_index for t, label in enumerate(labels)]


def render(tokenizer: Any, input_ids: Any, trained: List[bool], color: bool) -> str:
    """The sample's text, special tokens shown as <bos>/<eos>, trained runs marked (colour or [[ ]])."""
    runs: List[Tuple[bool, List[int]]] = []
    for token, is_trained in zip(input_ids.tolist(), trained):
        if runs and runs[-1][0] == is_trained:
            runs[-1][1].append(token)
        else:
            runs.append((is_trained, [token]))
    parts = []
    for is_trained, ids in runs:
        text = _text(tokenizer, ids)
        if color:
            parts.append(f"{GREEN if is_trained else DIM}{text}{RESET}")
        else:
            parts.append(f"[[{text}]]" if is_trained else text)
    return "".join(parts)


def _text(tokenizer: Any, ids: List[int]) -> str:
    specials = {tokenizer.bos_id: "<bos>", tokenizer.eos_id: "<eos>"}
    out, plain = [], []
    for token in ids:
        if token in specials:
            if plain:
                out.append(tokenizer.decode(plain))
                plain = []
            out.append(specials[token])
        else:
            plain.append(token)
    if plain:
        out.append(tokenizer.decode(plain))
    return "".join(out)


def inspect_data(data: Any, n: int, max_seq_length: int, out: Optional[TextIO] = None, color: Optional[bool] = None) -> None:
    """Print `n` prepared training samples of an SFT data module (connected, checked) and a summary of its
    training set; samples are cut at `max_seq_length` tokens as training cuts them."""
    out = out or sys.stdout
    color = out.isatty() if color is None else color
    data.prepare_data()
    data.setup()
    dataset = data.train_dataset
    print(f"{type(data).__name__}: {len(dataset)} training samples, prompt style {type(data.prompt_style).__name__}, "
          f"mask_prompt {getattr(data, 'mask_prompt', None)}, max_seq_length {max_seq_length}", file=out)
    for i in range(min(n, len(dataset))):
        item = dataset[i]
        ids, labels = item["input_ids"][:max_seq_length], item["labels"][:max_seq_length]
        full = sum(len(part) for part in dataset.encode(i))
        trained = trained_mask(labels, data.ignore_index)
        cut = f"truncated ({full} -> {len(ids)} tokens)" if full > len(ids) else "not truncated"
        print(f"\n── sample {i} · {len(ids)} tokens (trained {sum(trained)}, masked {len(ids) - sum(trained)}) · {cut}", file=out)
        print(render(data.tokenizer, ids, trained, color), file=out)
    print(summary(data, max_seq_length), file=out)


def summary(data: Any, max_seq_length: int) -> str:
    """Length percentiles, truncated samples and samples left with no trained token, over the training set."""
    dataset = data.train_dataset
    lengths, truncated, empty = [], 0, 0
    for i in range(len(dataset)):
        full = sum(len(part) for part in dataset.encode(i))
        lengths.append(full)
        truncated += full > max_seq_length
        if not any(trained_mask(dataset[i]["labels"][:max_seq_length], data.ignore_index)):
            empty += 1
    lengths.sort()
    pct = lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]  # noqa: E731
    lines = [
        f"\n── summary of {len(lengths)} training samples (tokens before truncation)",
        f"length: min {lengths[0]}, p50 {pct(0.5)}, p90 {pct(0.9)}, p99 {pct(0.99)}, max {lengths[-1]}",
        f"truncated at {max_seq_length} tokens: {truncated} ({100 * truncated / len(lengths):.1f}%)",
        f"would be dropped (no trained token within max_seq_length; they add nothing to the loss): {empty}",
    ]
    if getattr(data, "packing", False):
        from litgpt.data.packing import pack

        rows = pack([min(n, max_seq_length) for n in lengths], max_seq_length)
        fill = sum(min(n, max_seq_length) for n in lengths) / (len(rows) * max_seq_length)
        lines.append(f"packing: {len(rows)} rows of {max_seq_length} tokens, {100 * fill:.1f}% filled")
    return "\n".join(lines)
