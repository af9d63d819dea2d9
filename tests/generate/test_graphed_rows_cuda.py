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


# per row: temperature, top_k, top_p, seed (None: torch's global generator); row 1 is greedy among sampled ones
SAMPLED = [(0.8, 50, 1.0, 1), (0.0, None, 1.0, None), (1.0, None, 0.9, 2), (0.7, 5, 1.0, 3), (1.2, 50, 0.8, 4)]


def model_for_test(device="cuda"):
    torch.manual_seed(0)
    config = Config(n_layer=2, n_head=8, n_query_groups=2, n_embd=256, block_size=256, vocab_size=320, padded_vocab_size=320,
                    intermediate_size=512, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", bias=False,
                    parallel_residual=False, rotary_percentage=1.0)
    with torch.device(device):
        return GPT(config).eval()


def generation(prompt, n, row, sampled, device):
    if not sampled:
        return Generation(torch.tensor(prompt, device=device), n, temperature=0.0)
    temperature, top_k, top_p, seed = SAMPLED[row]
    generator = None if seed is None else torch.Generator(device).manual_seed(seed)
    return Generation(torch.tensor(prompt, device=device), n, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)


def run(model, step, max_batch_size, sampled=False, device="cuda"):
    batcher = Batcher(model, max_batch_size=max_batch_size, step=step, cache_multiple=16)
    gens = [generation(p, n, row, sampled, device) for row, (p, n) in enumerate(zip(PROMPTS, LENGTHS))]
    for gen in gens:
        batcher.add(gen)
    batcher.run()
    return [g.tokens for g in gens]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graphs and Triton decode kernels)")
@pytest.mark.parametrize("max_batch_size", [1, 3])
def test_graphed_loop_equals_the_eager_step(max_batch_size):
    model = model_for_test()
    expected = run(model, decode_step, max_batch_size)
    assert run(model, GraphedStep(), max_batch_size) == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graphs and Triton decode kernels)")
@pytest.mark.parametrize("max_batch_size", [1, 3, 5])
def test_sampling_inside_the_graph_draws_what_sampling_after_it_draws(max_batch_size):
    # the same graphed logits either way (the same kernels): sampled in the step's graph (`decode_and_sample`, what the
    # batcher calls) or after a graph that returns the logits (a step without that method), under the same seeds
    model = model_for_test()
    graphed = GraphedStep()
    torch.manual_seed(5)  # the unseeded row draws from torch's global generator
    after = run(model, lambda *args: graphed(*args), max_batch_size, sampled=True)
    torch.manual_seed(5)
    inside = run(model, GraphedStep(), max_batch_size, sampled=True)
    assert inside == after
    assert [len(t) for t in inside] == LENGTHS and len({tuple(t) for t in inside}) == len(inside)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graphs and Triton decode kernels)")
def test_prompts_copying_a_shared_prefix_through_the_graphed_loop_decode_as_computed_whole():
    shared = [1] + [(7 * i) % 300 + 2 for i in range(95)]  # 96 tokens, copied in whole blocks of 16
    prompts = [shared + [5], [1, 3], shared + [9, 9], shared[:70] + [11], shared + [4, 4, 4]]

    def tokens(step, reuse):
        batcher = Batcher(model, max_batch_size=3, step=step, cache_multiple=16, reuse_prefixes=reuse)
        gens = [Generation(torch.tensor(p, device="cuda"), 12, temperature=0.0) for p in prompts]
        for gen in gens:
            batcher.add(gen)
        batcher.run()
        return [g.tokens for g in gens], batcher.reused_tokens

    model = model_for_test()
    expected, none = tokens(decode_step, False)
    got, reused = tokens(GraphedStep(), True)
    assert got == expected and none == 0 and reused > 0
