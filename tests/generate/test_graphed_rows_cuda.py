"""On a CUDA GPU: the server's loop through CUDA graphs (and our decode kernels for attention over the cache, and
for one row the products) gives the greedy tokens of the plain eager step, rows joining and leaving. Skipped, saying
so, without a GPU (the CPU suite checks the loop itself in test_batcher.py)."""

import pytest
import torch

from litgpt.config import Config
from litgpt.engine.batcher import Batcher, Generation
from litgpt.engine.core import GraphedStep, decode_step
from litgpt.model import GPT

PROMPTS = [[1, 5, 17, 42, 99, 7], [1, 3], [1, 250, 11, 12, 13, 14, 15, 16, 19, 200, 201], [1, 8, 9], [1, 60, 61, 62, 63]]
LENGTHS = [9, 30, 5, 17, 12]


def run(model, step, max_batch_size):
    batcher = Batcher(model, max_batch_size=max_batch_size, step=step, cache_multiple=16)
    gens = [Generation(torch.tensor(p, device="cuda"), n, temperature=0.0) for p, n in zip(PROMPTS, LENGTHS)]
    for gen in gens:
        batcher.add(gen)
    batcher.run()
    return [g.tokens for g in gens]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graphs and Triton decode kernels)")
@pytest.mark.parametrize("max_batch_size", [1, 3])
def test_graphed_loop_equals_the_eager_step(max_batch_size):
    torch.manual_seed(0)
    config = Config(n_layer=2, n_head=8, n_query_groups=2, n_embd=256, block_size=256, vocab_size=320, padded_vocab_size=320,
                    intermediate_size=512, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", bias=False,
                    parallel_residual=False, rotary_percentage=1.0)
    with torch.device("cuda"):
        model = GPT(config).eval()
    expected = run(model, decode_step, max_batch_size)
    assert run(model, GraphedStep(), max_batch_size) == expected
