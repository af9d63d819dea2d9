import shutil

import pytest
import torch
from generate.tiny import checkpoint, one_thread  # noqa: F401 (an autouse fixture)

from litgpt import LLM
from litgpt.checkpoint import load_model
from litgpt.prompts import Alpaca, ChatTemplate, Default

PROMPTS = ["What food do llamas eat?", "Hi", "Tokens stream one at a time; the reply is printed piece by piece."]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return checkpoint(tmp_path_factory, "tiny-random-llama", "llama")


@pytest.fixture(scope="module")
def llm(llama_dir):
    return LLM.load(llama_dir)


def test_load_and_generate(llm, llama_dir):
    assert isinstance(llm, torch.nn.Module) and isinstance(llm.prompt_style, Default)
    assert llm.config.name == "tiny-random-llama" and llm.checkpoint_dir == llama_dir
    text = llm.generate(PROMPTS[0], max_new_tokens=10, temperature=0.0)
    assert isinstance(text, str)
    ids = llm.generate(PROMPTS[0], max_new_tokens=10, temperature=0.0, return_as_token_ids=True)
    assert ids.dtype == torch.long and ids.ndim == 1 and llm.tokenizer.decode(ids) == text
    assert "".join(llm.generate(PROMPTS[0], max_new_tokens=10, temperature=0.0, stream=True)) == text
    streamed_ids = list(llm.generate(PROMPTS[0], max_new_tokens=10, temperature=0.0, stream=True, return_as_token_ids=True))
    assert torch.equal(torch.cat(streamed_ids), ids)


def test_batch_equals_one_prompt_at_a_time(llm):
    singles = [llm.generate(p, max_new_tokens=12, temperature=0.0) for p in PROMPTS]
    assert llm.generate(PROMPTS, max_new_tokens=12, temperature=0.0) == singles
    assert llm.generate(list(reversed(PROMPTS)), max_new_tokens=12, temperature=0.0) == list(reversed(singles))
    ids = llm.generate(PROMPTS, max_new_tokens=12, temperature=0.0, return_as_token_ids=True)
    assert [llm.tokenizer.decode(i) for i in ids] == singles
    with pytest.raises(ValueError, match="single prompt"):
        llm.generate(PROMPTS, stream=True)


def test_sampling_with_a_seed_is_reproducible(llm):
    texts = []
    for _ in range(2):
        torch.manual_seed(5)
        texts.append(llm.generate(PROMPTS[0], max_new_tokens=15, temperature=1.0, top_k=50, top_p=0.9))
    assert texts[0] == texts[1]


def test_prompt_style_and_sys_prompt(llama_dir, tmp_path):
    folder = tmp_path / "styled"
    shutil.copytree(llama_dir, folder)
    (folder / "prompt_style.yaml").write_text("class_path: litgpt.prompts.Alpaca\n")
    llm = LLM.load(folder)
    assert isinstance(llm.prompt_style, Alpaca)
    plain = LLM.load(llama_dir)
    styled = plain.tokenizer.decode(plain.generate(Alpaca().apply("Hi", sys_prompt="S: "), max_new_tokens=6, temperature=0.0, return_as_token_ids=True))
    assert llm.generate("Hi", max_new_tokens=6, temperature=0.0, sys_prompt="S: ") == styled


def test_generate_takes_litgpts_positional_order(llama_dir, tmp_path):
    """LitGPT's order: prompt, sys_prompt, max_new_tokens, temperature, top_k, top_p, return_as_token_ids, stream."""
    import inspect

    order = ["prompt", "sys_prompt", "max_new_tokens", "temperature", "top_k", "top_p", "return_as_token_ids", "stream"]
    assert list(inspect.signature(LLM.generate).parameters)[1:] == order
    folder = tmp_path / "styled"
    shutil.copytree(llama_dir, folder)
    (folder / "prompt_style.yaml").write_text("class_path: litgpt.prompts.Alpaca\n")  # a style that uses sys_prompt
    llm = LLM.load(folder)
    by_name = llm.generate("Hi", sys_prompt="Be brief.", max_new_tokens=6, temperature=0.0, top_k=None, top_p=1.0)
    assert llm.generate("Hi", "Be brief.", 6, 0.0, None, 1.0) == by_name != llm.generate("Hi", None, 6, 0.0)
    ids = llm.generate("Hi", "Be brief.", 6, 0.0, None, 1.0, True)
    assert llm.tokenizer.decode(ids) == by_name
    assert "".join(llm.generate("Hi", "Be brief.", 6, 0.0, None, 1.0, False, True)) == by_name


def test_preprocessor_and_fabric(llm, llama_dir):
    """LitGPT's `llm.preprocessor` (the tokenizer and the device ids go to) and `llm.fabric` (None: no Fabric here)."""
    from litgpt.api import Preprocessor

    assert isinstance(llm.preprocessor, Preprocessor) and llm.preprocessor.tokenizer is llm.tokenizer
    assert llm.preprocessor.device == llm.device and llm.fabric is None
    ids = llm.preprocessor.encode(PROMPTS[0])
    assert ids.device == llm.device and torch.equal(ids, llm.tokenizer.encode(PROMPTS[0]))
    assert llm.preprocessor.decode(ids) == llm.tokenizer.decode(ids)
    later = LLM.load(llama_dir, distribute=None)
    assert later.preprocessor.device == ("cuda" if torch.cuda.is_available() else "cpu") and later.fabric is None
    later.distribute(accelerator="cpu", precision="32-true")
    assert later.preprocessor.device == torch.device("cpu")


def test_forward_returns_logits_and_loss(llm):
    ids = torch.tensor([[0, 5, 17, 42]])
    logits = llm(ids)
    assert logits.shape == (1, 4, llm.config.padded_vocab_size)
    logits, loss = llm(ids, target_ids=ids)
    assert loss.ndim == 0 and loss > 0
    _, custom = llm(ids, target_ids=ids, loss_fn=lambda x, y: x.sum() * 0)
    assert custom == 0
    assert set(llm.state_dict()) == set(load_model(llm.checkpoint_dir).state_dict())


def test_benchmark_reports_litgpt_metrics(llm):
    text, metrics = llm.benchmark(num_iterations=2, prompt=PROMPTS[0], max_new_tokens=5, temperature=0.0)
    assert text == llm.generate(PROMPTS[0], max_new_tokens=5, temperature=0.0)
    keys = {"Seconds total", "Seconds to first token", "Tokens generated", "Inference speed in tokens/sec"}
    assert keys <= set(metrics) and all(len(metrics[k]) == 2 for k in keys)
    assert all(t > 0 for t in metrics["Seconds to first token"]) and metrics["Tokens generated"][0] > 0
    assert ("Total GPU memory allocated in GB" in metrics) == (llm.device.type == "cuda")


def test_benchmark_dict_to_markdown_table(llm):
    from litgpt.api import benchmark_dict_to_markdown_table

    table = benchmark_dict_to_markdown_table({"Seconds total": [0.8, 0.81, 0.79], "Tokens generated": [25, 27], "One run": [5.92]})
    assert table == (
        "| Metric                              | Mean                        | Std Dev                     |\n"
        "|-------------------------------------|-----------------------------|-----------------------------|\n"
        "| Seconds total                       | 0.80                        | 0.01                        |\n"
        "| Tokens generated                    | 26.00                       | 1.41                        |\n"
        "| One run                             | 5.92                        | nan                         |\n"
    )
    _, metrics = llm.benchmark(num_iterations=2, prompt=PROMPTS[0], max_new_tokens=3, temperature=0.0)
    lines = benchmark_dict_to_markdown_table(metrics).splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == list(metrics) and len({len(line) for line in lines}) == 1


def test_save_round_trip(llm, tmp_path):
    llm.save(tmp_path / "saved")
    saved = tmp_path / "saved"
    for name in ("lit_model.pth", "model_config.yaml", "tokenizer.json", "tokenizer_config.json", "config.json"):
        assert (saved / name).is_file(), name
    assert (saved / "prompt_style.yaml").read_text() == "class_path: litgpt.prompts.Default\n"
    again = LLM.load(saved)
    assert again.generate(PROMPTS[0], max_new_tokens=10, temperature=0.0) == llm.generate(PROMPTS[0], max_new_tokens=10, temperature=0.0)
    state, loaded = llm.state_dict(), torch.load(saved / "lit_model.pth", weights_only=True)
    assert all(torch.equal(state[k].cpu(), loaded[k]) for k in state)


def test_save_writes_the_loaded_prompt_style(llama_dir, tmp_path):
    """LitGPT's save writes `PromptStyle.from_config` when no style is passed; ours writes the style the LLM was loaded
    with, which is that same style unless the folder named another (then a reload keeps generating as before)."""
    from litgpt.prompts import Phi2, PromptStyle, load_prompt_style

    plain = LLM.load(llama_dir)
    plain.save(tmp_path / "plain")
    assert type(load_prompt_style(tmp_path / "plain")) is type(PromptStyle.from_config(plain.config))
    folder = tmp_path / "styled"
    shutil.copytree(llama_dir, folder)
    (folder / "prompt_style.yaml").write_text("class_path: litgpt.prompts.Alpaca\n")
    styled = LLM.load(folder)
    styled.save(tmp_path / "saved")
    assert isinstance(load_prompt_style(tmp_path / "saved"), Alpaca)
    again = LLM.load(tmp_path / "saved")
    assert again.generate("Hi", "Be brief.", 6, 0.0) == styled.generate("Hi", "Be brief.", 6, 0.0)
    styled.save(tmp_path / "phi", prompt_style=Phi2())
    assert isinstance(load_prompt_style(tmp_path / "phi"), Phi2)


def test_chat_template_is_used_and_survives_save(tmp_path_factory, tmp_path):
    folder = checkpoint(tmp_path_factory, "tiny-random-llama-chatml", "llama", chat_template=True)
    llm = LLM.load(folder)
    assert isinstance(llm.prompt_style, ChatTemplate)
    llm.save(tmp_path / "saved")
    assert not (tmp_path / "saved" / "prompt_style.yaml").exists()
    assert isinstance(LLM.load(tmp_path / "saved").prompt_style, ChatTemplate)


def test_random_init_needs_a_tokenizer(llama_dir):
    with pytest.raises(ValueError, match="tokenizer_dir"):
        LLM.load("pythia-14m", init="random")
    llm = LLM.load("pythia-14m", init="random", tokenizer_dir=llama_dir)
    assert llm.checkpoint_dir is None and llm.config.name == "pythia-14m"
    assert len(llm.generate("Hi", max_new_tokens=5, temperature=0.0, return_as_token_ids=True)) == 5
    with pytest.raises(ValueError, match="not a supported config name"):
        LLM.load("not-a-model", init="random", tokenizer_dir=llama_dir)
    with pytest.raises(ValueError, match="init"):
        LLM.load("pythia-14m", init="zeros")


def test_distribute_later(llama_dir):
    llm = LLM.load(llama_dir, distribute=None)
    with pytest.raises(AttributeError, match="distribute"):
        llm.generate("Hi")
    llm.distribute(accelerator="cpu", devices=1, precision="32-true", fixed_kv_cache_size=64)
    same = LLM.load(llama_dir, accelerator="cpu", precision="32-true")
    assert llm.generate("Hi", max_new_tokens=5, temperature=0.0) == same.generate("Hi", max_new_tokens=5, temperature=0.0)
    llm.distribute(accelerator="cpu", devices=2, precision="32-true", fixed_kv_cache_size=64)  # one CPU, as LitGPT
    assert llm.generate("Hi", max_new_tokens=5, temperature=0.0) == same.generate("Hi", max_new_tokens=5, temperature=0.0)
    with pytest.raises(NotImplementedError, match="generate_tp"):
        llm.distribute(generate_strategy="tensor_parallel")
    with pytest.raises(ValueError, match="generate_strategy"):
        llm.distribute(generate_strategy="pipeline")
    with pytest.raises(ValueError, match="precision"):
        llm.distribute(precision="8-bit")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            llm.distribute(quantize="bnb.nf4")
        with pytest.raises(ValueError, match="CUDA"):
            llm.distribute(accelerator="cuda")


def test_registry_name_is_downloaded_lazily(llama_dir, tmp_path, monkeypatch):
    import litgpt.hub

    calls = []

    def download(repo_id, checkpoint_dir, access_token=None, **kwargs):
        calls.append((repo_id, access_token))
        shutil.copytree(llama_dir, checkpoint_dir / repo_id)

    monkeypatch.setattr(litgpt.hub, "download", download)
    monkeypatch.chdir(tmp_path)
    llm = LLM.load("pythia-14m", access_token="secret")
    assert calls == [("EleutherAI/pythia-14m", "secret")]
    assert llm.checkpoint_dir == tmp_path.joinpath("checkpoints", "EleutherAI", "pythia-14m").relative_to(tmp_path)
    LLM.load("EleutherAI/pythia-14m")  # now local: no second download
    assert len(calls) == 1
    with pytest.raises(ValueError, match="neither a checkpoint folder nor a known model"):
        LLM.load("no/such-model")


def test_prompt_too_long(llm):
    with pytest.raises(ValueError, match="context length"):
        llm.generate("llamas " * 3000, max_new_tokens=5)


def test_llm_load_attaches_an_adapter_folder(tiny_checkpoint, tmp_path):
    """chat, serve and evaluate load through LLM.load, so an Adapter folder must come back with its adapter."""
    import shutil

    import torch
    import yaml

    from litgpt import LLM
    from litgpt.adapter import adapter_filter, add_adapter
    from litgpt.checkpoint import load_model

    base = load_model(tiny_checkpoint)
    model = add_adapter(load_model(tiny_checkpoint), prompt_length=3, start_layer=1)
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if adapter_filter(name):
            param.data.normal_(0, 0.5)  # gates start at zero; make the adapter visible
    folder = tmp_path / "adapter-final"
    folder.mkdir()
    torch.save({k: v for k, v in model.state_dict().items() if adapter_filter(k)}, folder / "lit_model.pth.adapter")
    for name in ("model_config.yaml", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_checkpoint / name, folder / name)
    (folder / "hyperparameters.yaml").write_text(yaml.safe_dump({"checkpoint_dir": str(tiny_checkpoint)}))

    x = torch.randint(0, 400, (1, 8))
    llm = LLM.load(str(folder), accelerator="cpu", precision="32-true")
    with torch.no_grad():
        got, expected, plain = llm.model(x), model.eval()(x), base(x)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, plain)


def test_sequential_strategy_spreads_the_blocks_and_generates_the_same(llama_dir):
    from litgpt.engine.core import GraphedStep

    one = LLM.load(llama_dir, accelerator="cpu", precision="32-true")
    spread = LLM.load(llama_dir, distribute=None)
    spread.distribute(accelerator="cpu", devices=2, precision="32-true", generate_strategy="sequential", fixed_kv_cache_size=64)
    assert spread.model.transformer.wte._forward_pre_hooks  # placed: each block moves its inputs to its device
    assert "set_kv_cache" not in vars(spread.model)  # GPT.set_kv_cache puts each cache beside its block, no patch
    assert isinstance(spread.decode_step, GraphedStep)
    kwargs = dict(max_new_tokens=8, temperature=0.0)
    assert spread.generate("What do llamas eat?", **kwargs) == one.generate("What do llamas eat?", **kwargs)
    with pytest.raises(ValueError, match="count"):
        spread.distribute(accelerator="cpu", devices=[0, 1], generate_strategy="sequential")
