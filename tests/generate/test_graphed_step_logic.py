"""GraphedStep's bookkeeping on the CPU: its static inputs, padding rows, graph keys and the sampling inside the step
(`decode_and_sample`), with the CUDA graph replaced by a stand-in that reruns the captured function on the static
inputs (what a replay does). test_graphed_rows_cuda.py runs the same on real graphs when a GPU is there."""

import pytest
import torch

from litgpt.engine import core
from litgpt.engine.core import GraphedStep
from test_graphed_rows_cuda import LENGTHS, model_for_test, run  # the same model, rows and settings


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


@pytest.mark.parametrize("sampled", [False, True])
@pytest.mark.parametrize("max_batch_size", [1, 3, 5])
def test_sampling_inside_the_replayed_step_equals_sampling_after_the_plain_step(stand_in_graphs, max_batch_size, sampled):
    model = model_for_test("cpu")
    torch.manual_seed(5)  # the unseeded row draws from torch's global generator
    expected = run(model, core.decode_step, max_batch_size, sampled, "cpu")
    torch.manual_seed(5)
    got = run(model, GraphedStep(), max_batch_size, sampled, "cpu")
    assert got == expected
    assert [len(t) for t in got] == LENGTHS
    assert stand_in_graphs and sum(g.replays for g in stand_in_graphs) > 0  # the steps went through the replays
