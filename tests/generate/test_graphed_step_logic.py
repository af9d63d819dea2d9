"""GraphedStep's bookkeeping on the CPU: its static inputs, padding rows, graph keys and the sampling inside the step
(`decode_and_sample`), with the CUDA graph replaced by a stand-in that reruns the captured function on the static
inputs (what a replay does). test_graphed_rows_cuda.py runs the same on real graphs when a GPU is there."""

import pytest
import torch

from litgpt.engine import core
from litgpt.engine.core import GraphedStep
from test_graphed_rows_cuda import LENGTHS, PROMPTS, SAMPLED  # noqa: F401 (the same rows and settings)

from litgpt.config import Config
from litgpt.engine.batcher import Batcher, Generation
from litgpt.model import GPT


class Replay:
    def __init__(self, forward, inputs, output):
        self.forward, self.inputs, self.output = forward, inputs, output
        self.replays = 0

    def replay(self):
        self.replays += 1
        self.output.copy_(self.forward(*self.inputs))


@pytest.fixture
def stand_in_graphs(monkeypatch):
    captured = []

    def capture(self, forward, inputs):
        output = forward(*inputs)
        graph = Replay(forward, inputs, output)
        captured.append(graph)
        return {"graph": graph, "inputs": inputs, "output": output}

    monkeypatch.setattr(GraphedStep, "_graphable", lambda self, model, tokens: True)
    monkeypatch.setattr(GraphedStep, "_capture", capture)
    return captured


def model_for_test():
    torch.manual_seed(0)
    config = Config(n_layer=2, n_head=4, n_query_groups=2, n_embd=64, block_size=256, vocab_size=320, padded_vocab_size=320,
                    intermediate_size=128, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", bias=False)
    return GPT(config).eval()


def run(model, step, max_batch_size, sampled):
    batcher = Batcher(model, max_batch_size=max_batch_size, step=step, cache_multiple=16)
    gens = []
    for row, (prompt, n) in enumerate(zip(PROMPTS, LENGTHS)):
        temperature, top_k, top_p, seed = SAMPLED[row] if sampled else (0.0, None, 1.0, None)
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        gens.append(Generation(torch.tensor(prompt), n, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator))
    for gen in gens:
        batcher.add(gen)
    batcher.run()
    return [g.tokens for g in gens]


@pytest.mark.parametrize("sampled", [False, True])
@pytest.mark.parametrize("max_batch_size", [1, 3, 5])
def test_sampling_inside_the_replayed_step_equals_sampling_after_the_plain_step(stand_in_graphs, max_batch_size, sampled):
    model = model_for_test()
    torch.manual_seed(5)  # the unseeded row draws from torch's global generator
    expected = run(model, core.decode_step, max_batch_size, sampled)
    torch.manual_seed(5)
    got = run(model, GraphedStep(), max_batch_size, sampled)
    assert got == expected
    assert [len(t) for t in got] == LENGTHS
    assert stand_in_graphs and sum(g.replays for g in stand_in_graphs) > 0  # the steps went through the replays
