import pytest
import torch
from tiny import hf_model

from litgpt.checkpoint import load_model
from litgpt.engine.core import ensure_kv_cache
from litgpt.engine.batcher import generate_batch, generate_tokens

PROMPTS = [[0, 5, 17, 42, 99, 7], [0, 3], [0, 250, 11, 12, 13, 14, 15, 16, 19, 200, 201]]


def greedy_without_cache(model, prompt, n):
    """The oracle: a full forward pass over the whole sequence for every new token."""
    ids = list(prompt)
    with torch.inference_mode():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt) :]


def greedy(model, prompt, n, **kwargs):
    ensure_kv_cache(model, 1, len(prompt) + n)
    return list(generate_tokens(model, torch.tensor(prompt), n, temperature=0.0, **kwargs))


def test_greedy_matches_transformers(family_dir):
    model = load_model(family_dir)
    hf = hf_model(family_dir)
    for prompt in PROMPTS:
        with torch.inference_mode():
            out = hf.generate(
                torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long), do_sample=False,
                max_new_tokens=12, min_new_tokens=12, eos_token_id=None, pad_token_id=0,
            )
        expected = out[0, len(prompt) :].tolist()
        assert greedy(model, prompt, 12) == expected
        assert greedy_without_cache(model, prompt, 12) == expected


def test_logits_match_transformers(family_dir):
    model, hf = load_model(family_dir), hf_model(family_dir)
    ids = torch.tensor([PROMPTS[2]])
    with torch.inference_mode():
        torch.testing.assert_close(model(ids)[..., : hf.config.vocab_size], hf(ids).logits, atol=1e-4, rtol=1e-4)


def test_batch_rows_equal_single_prompts(llama_dir):
    model = load_model(llama_dir)
    singles = [greedy(model, p, 10) for p in PROMPTS]
    prompts = [torch.tensor(p) for p in PROMPTS]
    ensure_kv_cache(model, len(prompts), max(map(len, PROMPTS)) + 10)
    rows = [[] for _ in prompts]
    for step in generate_batch(model, prompts, 10, temperature=0.0):
        for row, released in zip(rows, step):
            row.extend(released)
    assert rows == singles


def test_stop_tokens_end_each_row_on_its_own(llama_dir):
    model = load_model(llama_dir)
    full = [greedy(model, p, 10) for p in PROMPTS]
    stop = full[0][3]  # the first row stops at its 4th token
    ensure_kv_cache(model, 3, 30)
    rows = [[] for _ in PROMPTS]
    for step in generate_batch(model, [torch.tensor(p) for p in PROMPTS], 10, temperature=0.0, stop_tokens=[stop]):
        for row, released in zip(rows, step):
            row.extend(released)
    for row, expected in zip(rows, full):
        assert row == (expected[: expected.index(stop)] if stop in expected else expected)
    assert greedy(model, PROMPTS[0], 10, stop_tokens=[stop], include_stop=True) == full[0][:4]
    assert greedy(model, PROMPTS[0], 10, stop_tokens=[(full[0][1], full[0][2])]) == full[0][:1]


def test_reusing_a_cached_prefix(llama_dir):
    model = load_model(llama_dir)
    first, second = PROMPTS[2][:7], PROMPTS[2]
    ensure_kv_cache(model, 1, 64)
    greedy(model, first, 5)  # leaves `first` in the cache
    assert greedy(model, second, 8, cached=7) == greedy_without_cache(model, second, 8)
    assert greedy(model, second, 8, cached=len(second)) == greedy_without_cache(model, second, 8)


def test_cache_and_length_errors(llama_dir):
    model = load_model(llama_dir)
    with pytest.raises(ValueError, match="KV cache"):
        list(generate_tokens(model, torch.tensor([0, 1]), 5))
    ensure_kv_cache(model, 1, 4)
    with pytest.raises(ValueError, match="KV cache"):
        list(generate_tokens(model, torch.tensor([0, 1, 2]), 5))
    with pytest.raises(ValueError, match="context"):
        ensure_kv_cache(model, 1, model.max_seq_length + 1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        list(generate_tokens(model, torch.tensor([0, 1]), 0))


def test_sampling_is_reproducible(llama_dir):
    model = load_model(llama_dir)
    ensure_kv_cache(model, 1, 40)
    runs = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(3)
        runs.append(list(generate_tokens(model, torch.tensor(PROMPTS[0]), 20, temperature=1.0, top_p=0.9, generator=generator)))
    assert runs[0] == runs[1]


def test_graphed_step_off_cuda_is_the_plain_step(family_dir):
    from litgpt.engine.core import GraphedStep

    model = load_model(family_dir)
    for prompt in PROMPTS:
        assert greedy(model, prompt, 10, step=GraphedStep()) == greedy(model, prompt, 10)


@pytest.mark.parametrize("window", [None, 3])
def test_a_prefill_from_position_zero_equals_attending_over_the_masked_cache(window):
    from litgpt.config import Config
    from litgpt.model import GPT

    torch.manual_seed(0)
    config = Config(n_layer=2, n_head=4, n_query_groups=2, n_embd=32, block_size=16, vocab_size=64, padded_vocab_size=64,
                    sliding_window_size=window)
    model = GPT(config).eval()
    idx = torch.randint(0, 64, (2, 7))
    positions = torch.arange(7).expand(2, -1)
    with torch.inference_mode():
        model.set_kv_cache(batch_size=2, max_seq_length=12)
        fresh = model(idx, positions, input_pos_maxp1=7)  # only the new tokens attend to each other
        fresh_cache = model.transformer.h[1].attn.kv_cache.k.clone()
        model.set_kv_cache(batch_size=2, max_seq_length=12)
        masked = model(idx, positions)  # over the whole cache, masked
        torch.testing.assert_close(fresh, masked)
        torch.testing.assert_close(fresh_cache, model.transformer.h[1].attn.kv_cache.k)
        torch.testing.assert_close(fresh, model(idx))


def test_prefill_through_a_compiled_forward_equals_the_plain_one(family_dir):
    from litgpt.engine.core import compile_blocks, prefill

    model = load_model(family_dir)
    compiled = compile_blocks(model, backend="eager", dynamic=True)  # what GraphedStep prefills through on GPUs
    prompts = [torch.tensor(p) for p in PROMPTS]
    with torch.inference_mode():
        for batch in (prompts[:1], prompts):
            ensure_kv_cache(model, len(batch), 32)
            expected = prefill(model, batch)
            torch.testing.assert_close(prefill(model, batch, forward=compiled), expected)


def test_compile_blocks_compiles_one_block_for_all_and_leaves_the_model_alone():
    import torch._dynamo
    from torch._dynamo.utils import counters

    from litgpt.config import Config
    from litgpt.engine.core import compile_blocks
    from litgpt.engine.decode_kernels import DecodeGatedMLP
    from litgpt.model import GPT

    torch.manual_seed(0)
    config = Config(n_layer=4, n_embd=32, n_head=4, n_query_groups=2, block_size=32, vocab_size=64, padding_multiple=64,
                    mlp_class_name="LLaMAMLP", intermediate_size=64, norm_class_name="RMSNorm", parallel_residual=False)
    model = GPT(config).eval()
    blocks = list(model.transformer.h)
    torch._dynamo.reset()
    counters.clear()
    view = compile_blocks(model, decode=True, backend="aot_eager", dynamic=False)
    model.set_kv_cache(batch_size=1)
    x = torch.randint(0, 64, (1, 8))
    with torch.inference_mode():
        model(x, torch.arange(8).view(1, -1))
        out = [view(x[:, i : i + 1], torch.tensor([[8 + i]])) for i in range(2)]
        assert counters["stats"]["unique_graphs"] == 2  # one compilation serves all four blocks, one the final norm
        model.set_kv_cache(batch_size=1)
        model(x, torch.arange(8).view(1, -1))
        for i in range(2):
            torch.testing.assert_close(out[i], model(x[:, i : i + 1], torch.tensor([[8 + i]])))
    assert list(model.transformer.h) == blocks  # the model keeps its plain blocks
    assert view.transformer.h[0].attn.kv_cache is model.transformer.h[0].attn.kv_cache  # and shares its caches
    assert isinstance(view.transformer.h[0].mlp, DecodeGatedMLP) and type(model.transformer.h[0].mlp.proj) is torch.nn.Linear
    assert view.transformer.h[0].mlp.mlp.proj.weight is model.transformer.h[0].mlp.proj.weight


@pytest.mark.parametrize("positions", ["rows", "shared"])
def test_compiled_decode_step_writes_the_kv_cache_in_place(positions):
    """Inductor's code for a decode step must not build a new copy of the cache (and copy it back) to write one
    position: per layer per token that was two passes over the whole cache."""
    import torch._dynamo
    from torch._inductor.utils import run_and_get_code

    from litgpt.config import Config
    from litgpt.engine.core import compile_blocks
    from litgpt.model import GPT

    torch.manual_seed(0)
    config = Config(n_layer=1, n_embd=64, n_head=4, n_query_groups=2, block_size=64, vocab_size=128, padding_multiple=64,
                    mlp_class_name="LLaMAMLP", intermediate_size=128, norm_class_name="RMSNorm", parallel_residual=False)
    model = GPT(config).eval()
    model.set_kv_cache(batch_size=2)
    prompt = torch.randint(0, 128, (2, 8))
    token, pos = torch.tensor([[3], [4]]), (torch.tensor([[8], [8]]) if positions == "rows" else torch.tensor([8]))
    torch._dynamo.reset()
    view = compile_blocks(model, dynamic=False)
    with torch.inference_mode():
        model(prompt, torch.arange(8), input_pos_maxp1=8)
        out, (code, *_) = run_and_get_code(view, token, pos, input_pos_maxp1=64)
        k_cache = model.transformer.h[0].attn.kv_cache.k.clone()
        model.set_kv_cache(batch_size=2)
        model(prompt, torch.arange(8), input_pos_maxp1=8)
        expected = model(token, pos, input_pos_maxp1=64)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(k_cache, model.transformer.h[0].attn.kv_cache.k)
    cache_shape = str(tuple(model.transformer.h[0].attn.kv_cache.k.shape))
    assert "empty_strided" in code and f"empty_strided_cpu({cache_shape}" not in code


def test_decode_inductor_options_are_all_known_to_this_torch():
    import torch._inductor.config

    from litgpt.engine.core import _decode_inductor_options

    options = _decode_inductor_options()
    assert options["coordinate_descent_tuning"] is True
    for key in options:
        owner = torch._inductor.config
        *path, name = key.split(".")
        for part in path:
            owner = getattr(owner, part)
        assert hasattr(owner, name), key


def test_a_step_that_fails_to_compile_decodes_uncompiled_from_then_on():
    """A server compiles its step by default: a shape met late that torch.compile cannot handle must not fail
    every request from then on."""
    import warnings

    from litgpt.engine.core import GraphedStep, decode_step
    from litgpt.model import GPT
    from litgpt.config import Config

    def failing_backend(graph, example_inputs):
        raise RuntimeError("this backend cannot compile anything")

    torch.manual_seed(0)
    model = GPT(Config(n_layer=2, n_head=2, n_embd=16, block_size=32, vocab_size=64, padded_vocab_size=64)).eval()
    model.set_kv_cache(batch_size=2)
    tokens, positions = torch.tensor([[3], [5]]), torch.tensor([[0], [0]])
    with torch.inference_mode():
        expected = decode_step(model, tokens, positions, 1)
        step = GraphedStep(compile=True, backend=failing_backend, options=None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            logits = step(model, tokens, positions, 1)
            again = step(model, tokens, positions, 1)
    assert torch.equal(logits, expected) and torch.equal(again, expected)
    assert not step.compile
    gave_up = [str(w.message) for w in caught if str(w.message).startswith("Decoding without torch.compile from now on")]
    assert len(gave_up) == 1 and "\n" not in gave_up[0], gave_up  # said once, in one line
