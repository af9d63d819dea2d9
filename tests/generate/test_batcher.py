"""Continuous batching: whenever a sequence joins or leaves the batch, every sequence decodes as it would alone."""

import threading

import pytest
import torch

from litgpt.checkpoint import load_model
from litgpt.engine.batcher import BackgroundBatcher, Batcher, Generation, cut_at_first
from litgpt.engine.core import ensure_kv_cache
from litgpt.engine.batcher import generate_tokens

PROMPTS = [[0, 5, 17, 42, 99, 7], [0, 3], [0, 250, 11, 12, 13, 14, 15, 16, 19, 200, 201], [0, 8, 9], [0, 60, 61, 62, 63]]
LENGTHS = [9, 14, 5, 11, 7]


@pytest.fixture(scope="module")
def model(llama_dir):
    return load_model(llama_dir)


def alone(model, prompt, n, **kwargs):
    ensure_kv_cache(model, 1, len(prompt) + n)
    return list(generate_tokens(model, torch.tensor(prompt), n, **{"temperature": 0.0, **kwargs}))


def test_rows_join_and_leave_yet_decode_as_alone(model):
    expected = [alone(model, p, n) for p, n in zip(PROMPTS, LENGTHS)]
    batcher = Batcher(model, max_batch_size=2, cache_multiple=8)  # small steps of cache growth, rows reused
    gens = [Generation(torch.tensor(p), n, temperature=0.0) for p, n in zip(PROMPTS, LENGTHS)]
    batcher.add(gens[0])
    for _ in range(3):
        batcher.step()  # the first runs alone a while; the others then join as rows free up
    for gen in gens[1:]:
        batcher.add(gen)
    steps = 3
    while batcher.busy:
        assert len(batcher.running) <= 2
        batcher.step()
        steps += 1
    assert [g.tokens for g in gens] == expected
    assert all(g.done and g.finish_reason == "length" for g in gens)
    assert steps < sum(LENGTHS)  # sequences did share decode steps


def test_stop_tokens_and_cancel(model):
    free = alone(model, PROMPTS[0], 12)
    stop = free[4]
    stopped = Generation(torch.tensor(PROMPTS[0]), 12, temperature=0.0, stop_tokens=[stop])
    cancelled = Generation(torch.tensor(PROMPTS[1]), 12, temperature=0.0)
    batcher = Batcher(model, max_batch_size=4)
    batcher.add(stopped)
    batcher.add(cancelled)
    batcher.step()
    batcher.step()
    cancelled.cancel()
    batcher.run()
    assert stopped.tokens == free[: free.index(stop)] and stopped.finish_reason == "stop"
    # the first step prefills (sampling a token), the second decodes (another) and reads the first back; the
    # cancel drops the second, never read: the reply holds what was released before it
    assert cancelled.finish_reason == "cancelled" and cancelled.tokens == alone(model, PROMPTS[1], 1)


def test_sampling_per_row_with_its_own_generator(model):
    expected = alone(model, PROMPTS[2], 10, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(3))
    sampled = Generation(torch.tensor(PROMPTS[2]), 10, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(3))
    greedy = Generation(torch.tensor(PROMPTS[0]), 10, temperature=0.0)
    batcher = Batcher(model, max_batch_size=2)
    batcher.add(greedy)
    batcher.add(sampled)
    batcher.run()
    assert sampled.tokens == expected and greedy.tokens == alone(model, PROMPTS[0], 10)


SYSTEM = [0] + [(7 * i) % 290 + 2 for i in range(99)]  # 100 tokens that several prompts begin with
OTHER = [0] + [(11 * i) % 290 + 3 for i in range(79)]  # 80


def test_prompts_sharing_a_running_rows_prefix_copy_its_cache_and_decode_as_alone(model):
    running = [SYSTEM + [5, 6], OTHER + [9, 9, 9]]
    joining = [SYSTEM + [9], OTHER[:70] + [11, 12, 13], [0, 3, 4], SYSTEM[:60] + [8]]  # the last two share < 64
    expected = [alone(model, p, 8) for p in running + joining]
    batcher = Batcher(model, max_batch_size=6)
    gens = [Generation(torch.tensor(p), 8, temperature=0.0) for p in running + joining]
    for gen in gens[:2]:
        batcher.add(gen)
    batcher.step()  # the first two are prefilled and decode
    for gen in gens[2:]:
        batcher.add(gen)
    batcher.run()
    assert [g.tokens for g in gens] == expected
    # the two sharing 96 and 64 tokens (whole blocks of 16) with different running rows copied 64 each
    assert batcher.reused_tokens == 2 * 64
    assert batcher.prefilled_tokens == sum(map(len, running + joining)) - 2 * 64


def test_prompts_admitted_together_copy_the_prefix_of_the_first_that_has_it(model):
    prompts = [[0, 3, 4], SYSTEM + [5, 6], OTHER + [7], SYSTEM[:90] + [9], OTHER + [8, 8]]
    expected = [alone(model, p, 6) for p in prompts]
    batcher = Batcher(model, max_batch_size=5)  # an empty batch: all five join at once
    gens = [Generation(torch.tensor(p), 6, temperature=0.0) for p in prompts]
    for gen in gens:
        batcher.add(gen)
    batcher.run()
    assert [g.tokens for g in gens] == expected
    # the first with each prefix is prefilled whole; the last two copy 80 and 80 tokens (whole blocks) from them
    assert batcher.reused_tokens == 2 * 80


def test_rows_leaving_take_their_prompts_out_of_the_prefixes_to_copy(model):
    batcher = Batcher(model, max_batch_size=4)
    first = Generation(torch.tensor(SYSTEM + [5]), 2, temperature=0.0)
    keep = Generation(torch.tensor([0, 3, 4]), 12, temperature=0.0)
    for gen in (first, keep):
        batcher.add(gen)
    batcher.step()
    batcher.add(Generation(torch.tensor(SYSTEM + [7]), 8, temperature=0.0))  # shares the running first's prefix
    batcher.step()
    assert batcher.reused_tokens == 96
    while not first.done:
        batcher.step()
    batcher.step()
    late = Generation(torch.tensor(SYSTEM + [8]), 4, temperature=0.0)
    batcher.add(late)
    batcher.run()
    assert batcher.reused_tokens == 2 * 96  # from the second, still running; none left from the first
    assert not batcher._prefixes and late.tokens == alone(model, SYSTEM + [8], 4)


LONG = [0] + [(13 * i) % 290 + 5 for i in range(33)]  # 34 tokens


def test_a_long_prompt_joining_running_rows_is_prefilled_a_chunk_a_step_while_they_decode(model):
    prompts = [[0, 3, 4], LONG, LONG[:20] + [9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9], [0, 8, 9]]
    expected = [alone(model, p, 10) for p in prompts]
    batcher = Batcher(model, max_batch_size=4, prefill_chunk=8, reuse_prefixes=False)
    gens = [Generation(torch.tensor(p), 10, temperature=0.0) for p in prompts]
    batcher.add(gens[0])
    batcher.step()
    for gen in gens[1:]:
        batcher.add(gen)
    batcher.step()  # the short one joins; the first long one starts; the second long one waits for it
    assert batcher.running == [gens[0], gens[3]] and batcher._chunked.gen is gens[1] and list(batcher.waiting) == [gens[2]]
    released = len(gens[0].tokens)
    for _ in range(4):  # 34 tokens, 8 a step: four chunks, and the fifth joins it
        batcher.step()
    assert gens[1] not in batcher.running and len(gens[0].tokens) == released + 4  # the running rows went on decoding
    batcher.step()
    assert gens[1] in batcher.running
    batcher.run()
    assert [g.tokens for g in gens] == expected
    assert batcher.prefilled_tokens == sum(map(len, prompts))


def test_a_long_prompt_copies_the_prefix_it_shares_with_a_running_row_into_its_own_cache(model):
    batcher = Batcher(model, max_batch_size=3, prefill_chunk=8)
    source = Generation(torch.tensor(SYSTEM + [5]), 30, temperature=0.0)
    batcher.add(source)
    batcher.step()
    sharing = Generation(torch.tensor(SYSTEM + LONG), 6, temperature=0.0)  # shares 96 (whole blocks): 38 to compute
    batcher.add(sharing)
    batcher.step()
    assert batcher._chunked.gen is sharing
    batcher.run()
    assert sharing.tokens == alone(model, SYSTEM + LONG, 6) and source.tokens == alone(model, SYSTEM + [5], 30)
    assert batcher.reused_tokens == 96 and batcher.prefilled_tokens == len(SYSTEM) + 1 + len(SYSTEM + LONG) - 96


def test_a_long_prompt_cancelled_while_prefilled_in_chunks_gives_up_its_row(model):
    batcher = Batcher(model, max_batch_size=2, prefill_chunk=8)
    other = Generation(torch.tensor([0, 3, 4]), 12, temperature=0.0)
    batcher.add(other)
    batcher.step()
    cancelled = Generation(torch.tensor(LONG), 6, temperature=0.0)
    later = Generation(torch.tensor(LONG), 6, temperature=0.0)
    batcher.add(cancelled)
    batcher.step()
    short = Generation(torch.tensor([0, 8, 9]), 4, temperature=0.0)
    batcher.add(later)  # no row for either: the other one runs, and the long one's row is kept for it
    batcher.add(short)
    batcher.step()
    assert batcher._chunked.gen is cancelled and list(batcher.waiting) == [later, short]
    cancelled.cancel()
    batcher.run()
    assert cancelled.finish_reason == "cancelled" and not cancelled.tokens
    assert later.tokens == alone(model, LONG, 6) and other.tokens == alone(model, [0, 3, 4], 12)
    assert short.tokens == alone(model, [0, 8, 9], 4)


def test_too_long_is_rejected_before_it_runs(model):
    batcher = Batcher(model, max_batch_size=1)
    with pytest.raises(ValueError, match="exceeds the model's context length"):
        batcher.add(Generation(torch.tensor(PROMPTS[0]), model.max_seq_length))
    with pytest.raises(ValueError, match="max_new_tokens must be at least 1"):
        batcher.add(Generation(torch.tensor(PROMPTS[0]), 0))
    assert not batcher.busy


def test_background_batcher_serves_threads(model):
    expected = [alone(model, p, n) for p, n in zip(PROMPTS, LENGTHS)]
    background = BackgroundBatcher(Batcher(model, max_batch_size=3))
    finished = [threading.Event() for _ in PROMPTS]
    gens = [
        Generation(torch.tensor(p), n, temperature=0.0, on_update=lambda g, ids, e=e: g.done and e.set())
        for p, n, e in zip(PROMPTS, LENGTHS, finished)
    ]
    threads = [threading.Thread(target=background.submit, args=(g,)) for g in gens]
    for t in threads:
        t.start()
    for event in finished:
        assert event.wait(30)
    background.close()
    assert [g.tokens for g in gens] == expected


def test_cut_at_first():
    assert cut_at_first("abc. def? g", [".", "?"]) == "abc"
    assert cut_at_first("abc", ["x", ""]) == "abc"


def test_sampled_rows_in_one_batch_equal_each_request_alone_with_its_seed(model):
    """Rows with different sampling settings and seeds, batched together (one draw for the whole batch), give
    each the tokens that `generate_tokens` gives that request alone after `torch.manual_seed(seed)`, as
    `litgpt generate --seed` does. Greedy rows sit beside them."""
    settings = [dict(temperature=0.9, top_k=None, top_p=1.0), dict(temperature=1.3, top_k=20, top_p=0.9),
                dict(temperature=0.0, top_k=None, top_p=1.0), dict(temperature=0.7, top_k=5, top_p=1.0),
                dict(temperature=2.0, top_k=None, top_p=0.5)]
    seeds = [11, 22, 33, 44, 55]

    def seeded_alone(prompt, n, seed, **kwargs):
        torch.manual_seed(seed)
        return alone(model, prompt, n, **kwargs)

    expected = [seeded_alone(p, n, seed, **s) for p, n, seed, s in zip(PROMPTS, LENGTHS, seeds, settings)]
    assert len({tuple(e) for e in expected}) == len(expected)
    gens = [Generation(torch.tensor(p), n, generator=torch.Generator().manual_seed(seed), **s)
            for p, n, seed, s in zip(PROMPTS, LENGTHS, seeds, settings)]
    batcher = Batcher(model, max_batch_size=5)
    for gen in gens:
        batcher.add(gen)
    batcher.run()
    assert [g.tokens for g in gens] == expected
    unseeded = [Generation(torch.tensor(p), n, **s) for p, n, s in zip(PROMPTS, LENGTHS, settings)]
    for gen in unseeded:
        batcher.add(gen)
    batcher.run()
    assert unseeded[2].tokens == expected[2]  # the greedy row does not depend on any draw


def test_warm_up_runs_the_many_row_and_the_one_row_step_and_leaves_the_batcher_idle(model):
    from litgpt.engine.core import decode_step

    rows_seen = []

    def step(model, tokens, positions, input_pos_maxp1):
        rows_seen.append(tokens.size(0))
        return decode_step(model, tokens, positions, input_pos_maxp1)

    batcher = Batcher(model, max_batch_size=4, step=step)
    batcher.warm_up()
    assert 2 in rows_seen and 1 in rows_seen  # compiling both views (and capturing them) happens here
    assert not batcher.busy
    # the batcher serves as before afterwards
    gen = Generation(torch.tensor(PROMPTS[0]), LENGTHS[0], temperature=0.0)
    batcher.add(gen)
    batcher.run()
    assert gen.tokens == alone(model, PROMPTS[0], LENGTHS[0])


def test_serve_warm_up_falls_back_to_the_uncompiled_step_when_compiling_fails(llama_dir, capsys):
    from litgpt.api import LLM
    from litgpt.engine.core import GraphedStep
    from litgpt.serve import _warm_up

    llm = LLM.load(str(llama_dir), accelerator="cpu")

    def failing(model, tokens, positions, input_pos_maxp1):
        raise RuntimeError("backend compiler failed\nwith a long story")

    llm.decode_step = failing
    _warm_up(llm, 4)
    assert isinstance(llm.decode_step, GraphedStep) and not llm.decode_step.compile
    err = capsys.readouterr().err
    assert err.strip() == "Serving without compiling: torch.compile failed (backend compiler failed)"
