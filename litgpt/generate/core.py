"""The one generation loop: prefill the prompt into the KV cache, then decode one token at a time.

Chat, `generate`, the Python API, serving and evaluation all decode through `generate_tokens`.
"""

from typing import Iterable, Iterator, Optional

import torch

from litgpt.generate.sampling import sample
from litgpt.model import GPT


@torch.inference_mode()
def generate_tokens(
    model: GPT,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: float = 1.0,
    stop_tokens: Iterable[int] = (),
    generator: Optional[torch.Generator] = None,
) -> Iterator[int]:
    """Yield new token ids for a 1-D `prompt`, stopping after a stop token (which is yielded) or `max_new_tokens`.

    The model's KV cache must hold at least `len(prompt) + max_new_tokens` positions (`model.set_kv_cache`).
    """
    T = prompt.numel()
    if T + max_new_tokens > model.max_seq_length:
        raise ValueError(
            f"The prompt ({T} tokens) plus max_new_tokens ({max_new_tokens}) exceeds the model's "
            f"max_seq_length ({model.max_seq_length})"
        )
    stop = set(stop_tokens)
    positions = torch.arange(T, device=prompt.device)
    logits = model(prompt.view(1, -1), positions, input_pos_maxp1=T)[:, -1]
    for step in range(max_new_tokens):
        token = sample(logits, temperature, top_k, top_p, generator)  # (1,)
        token_id = int(token)
        yield token_id
        if token_id in stop or step == max_new_tokens - 1:
            return
        position = torch.tensor([T + step], device=prompt.device)
        logits = model(token.view(1, 1), position, input_pos_maxp1=T + step + 1)[:, -1]
