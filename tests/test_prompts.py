import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from litgpt import prompts
from litgpt.config import Config, names
from litgpt.prompts import (
    ChatTemplate,
    PromptStyle,
    has_prompt_style,
    load_prompt_style,
    model_name_to_prompt_style,
    save_prompt_style,
)

CONVERSATION = [
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "What do llamas eat?"},
]

# Own template: bos_token, a namespace, loop variables, raise_exception, strftime_now, filters, whitespace control.
OWN_TEMPLATE = (
    "{{- bos_token }}"
    "{%- set ns = namespace(turns=0) %}"
    "{%- if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set messages = messages[1:] %}"
    "{%- else %}{% set system = 'Today is ' + strftime_now('%Y') + '.' %}{% endif %}"
    "[SYS]{{ system | trim }}[/SYS]\n"
    "{%- for message in messages %}\n"
    "{%- if message['role'] not in ['user', 'assistant'] %}{{ raise_exception('bad role ' + message['role']) }}{% endif %}\n"
    "{%- if message['role'] == 'user' %}{% set ns.turns = ns.turns + 1 %}{% endif %}\n"
    "<{{ message['role'] | upper }} n={{ ns.turns }}{{ ' last' if loop.last else '' }}>{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}<ASSISTANT>{% endif %}"
)

QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if not (message.role == 'system' and loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

LLAMA3_TEMPLATE = (
    "{{- bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content'] | trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set system_message = 'You are a helpful assistant.' %}\n"
    "{%- endif %}\n"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + system_message + '<|eot_id|>' }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n"
)


def test_single_turn_texts_match_litgpt():
    assert PromptStyle.from_name("alpaca").apply("Add 2 and 3", input="") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd 2 and 3\n\n### Response:\n"
    )
    assert prompts.Alpaca().apply("Sum", input="2 3").endswith("### Instruction:\nSum\n\n### Input:\n2 3\n\n### Response:\n")
    assert prompts.Alpaca().apply("x", sys_prompt="SYS ") == "SYS ### Instruction:\nx\n\n### Response:\n"
    assert prompts.Default().apply("plain") == "plain"
    assert prompts.Llama3().apply("Hi") == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert prompts.Qwen2_5().apply("Hi") == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert prompts.ChatML("Be brief.").apply("Hi", sys_prompt="Be kind.").startswith("<|im_start|>system\nBe kind.<|im_end|>")
    assert prompts.Qwen3().apply("Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert prompts.Gemma().apply("Hi") == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert prompts.Phi2().apply("Hi") == "Instruct: Hi\nOutput:"
    assert prompts.Phi3().apply("Hi") == "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"
    assert prompts.Phi4().apply("Hi") == "<|im_start|>user<|im_sep|>Hi<|im_end|><|im_start|>assistant<|im_sep|>"
    assert prompts.Phi4Mini().apply("Hi", sys_prompt="S") == "<|system|>S<|end|><|user|>Hi<|end|><|assistant|>"
    assert prompts.TinyLlama().apply("Hi") == (
        "<|system|>\nYou are a friendly chatbot who always gives helpful, detailed, and polite answers.</s>\n"
        "<|user|>\nHi</s>\n<|assistant|>\n"
    )
    assert prompts.CodeLlama().apply("Hi") == "[INST] Hi [/INST]"
    assert prompts.CodeLlama().apply("Hi", sys_prompt="S") == "[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST]"
    llama2 = prompts.Llama2().apply("Hi", sys_prompt="S")
    assert llama2 == "[INST] <<SYS>>\nS\n<</SYS>>\n\n Hi [/INST] "
    assert prompts.R1Base().apply("Hi") == "<｜User｜>Hi<｜Assistant｜>"
    assert prompts.OLMo().apply("Hi") == "<|endoftext|><|user|>\nHi\n<|assistant|>\n"
    assert prompts.FreeWilly2().apply("Hi") == (
        "### System:\nThis is a system prompt, please behave and help the user.\n\n### User:\nHi\n\n### Assistant:\n"
    )
    assert prompts.StableLMAlpha().apply("Hi").startswith("<|SYSTEM|># StableLM Tuned (Alpha version)\n")
    assert prompts.StableLMAlpha().apply("Hi").endswith("harm a human.<|USER|>Hi<|ASSISTANT|>")
    assert prompts.StableLMZephyr().apply("Hi") == "<|user|>\nHi<|endoftext|>\n<|assistant|>\n"
    assert prompts.Platypus().apply("Hi") == "### Instruction:\n\nHi\n\n### Response:\n"
    assert prompts.StableCode().apply("Hi") == "###Instruction\nHi###Response\n"
    assert prompts.Falcon().apply("Hi") == "Hi\nAnswer:"
    assert prompts.Phi1().apply("Hi") == "Hi\n\nAnswer:"
    function_calling = prompts.Llama2FunctionCalling().apply("Hi")
    assert function_calling.startswith('<FUNCTIONS>{{"function": "search_bing"') and function_calling.endswith("Hi[/INST]\n\n")


@pytest.mark.parametrize(
    "name, style",
    [
        ("Llama-3.1-8B-Instruct", prompts.Llama3),
        ("Llama-3.2-1B", prompts.Default),
        ("Llama-2-7b-chat-hf", prompts.Llama2),
        ("Llama-2-7b-chat-hf-function-calling-v2", prompts.Llama2FunctionCalling),
        ("CodeLlama-7b-Instruct-hf", prompts.CodeLlama),
        ("Mistral-7B-Instruct-v0.3", prompts.CodeLlama),
        ("Mixtral-8x7B-Instruct-v0.1", prompts.CodeLlama),
        ("Qwen2.5-7B-Instruct", prompts.Qwen2_5),
        ("Qwen2.5-Math-7B-Instruct", prompts.Qwen2_5_Math),
        ("QwQ-32B-Preview", prompts.QwQ),
        ("Qwen3-8B", prompts.Qwen3),
        ("phi-2", prompts.Phi2),
        ("Phi-3-mini-4k-instruct", prompts.Phi3),
        ("phi-4", prompts.Phi4),
        ("Phi-4-mini-instruct", prompts.Phi4Mini),
        ("Phi-4-reasoning", prompts.Phi4Reasoning),
        ("Phi-4-mini-reasoning", prompts.Phi4MiniReasoning),
        ("Gemma-2-9b-it", prompts.Gemma),
        ("gemma-2-9b-it", prompts.Gemma),
        ("CodeGemma-7b-it", prompts.Gemma),
        ("Gemma-2-9b", prompts.Default),
        ("tiny-llama-1.1b-chat", prompts.TinyLlama),
        ("TinyLlama-1.1B-Chat-v1.0", prompts.TinyLlama),
        ("SmolLM2-1.7B-Instruct", prompts.SmolLM2),
        ("salamandra-7b-instruct", prompts.Salamandra),
        ("OLMo-1B-hf", prompts.OLMo),
        ("OLMo-2-1124-7B-Instruct", prompts.Llama3),
        ("DeepSeek-R1-Distill-Llama-8B", prompts.R1Base),
        ("Falcon3-7B-Instruct", prompts.Falcon3),
        ("falcon-7b-instruct", prompts.Falcon),
        ("stablelm-zephyr-3b", prompts.StableLMZephyr),
        ("pythia-160m", prompts.Default),
    ],
)
def test_name_table(name, style):
    assert type(model_name_to_prompt_style(name)) is style
    assert type(PromptStyle.from_config(Config(name=name, n_embd=32, n_head=4))) is style


def test_every_registry_name_has_a_style_and_every_style_renders():
    for name in names():
        assert isinstance(model_name_to_prompt_style(name), PromptStyle)
    for name, cls in prompts.prompt_styles.items():
        style = PromptStyle.from_name(name)
        assert type(style) is cls
        text = style.render(CONVERSATION)
        assert "What do llamas eat?" in text and "Hello! How can I help?" in text
    with pytest.raises(ValueError, match="Unknown prompt style"):
        PromptStyle.from_name("nope")


@pytest.mark.parametrize("name", [n for n, cls in prompts.prompt_styles.items() if issubclass(cls, prompts.Turns)])
def test_turn_styles_render_conversations_consistently(name):
    style = PromptStyle.from_name(name)
    first = style.render(CONVERSATION[:1])
    assert first == style.apply("Hi there")
    full = style.render(CONVERSATION)
    # a conversation's rendering extends the previous turn's (so chat can reuse the KV cache), minus the reply header
    assert full.startswith(first[: len(first) - len(style.generation)])
    assert full.endswith(style.generation)
    assert style.render(CONVERSATION, sys_prompt="SYSTEM-X") == style.render([{"role": "system", "content": "SYSTEM-X"}] + CONVERSATION)
    assert "SYSTEM-X" in style.render(CONVERSATION, sys_prompt="SYSTEM-X")


def test_conversation_texts():
    assert prompts.Llama3().render(CONVERSATION) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat do llamas eat?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert prompts.CodeLlama().render(CONVERSATION) == "[INST] Hi there [/INST] Hello! How can I help?</s>[INST] What do llamas eat? [/INST]"
    assert prompts.Gemma().render(CONVERSATION, sys_prompt="Be brief.") == (
        "<start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\nHello! How can I help?<end_of_turn>\n"
        "<start_of_turn>user\nWhat do llamas eat?<end_of_turn>\n<start_of_turn>model\n"
    )
    assert prompts.Default().render(CONVERSATION) == "Hi thereHello! How can I help?\n\nWhat do llamas eat?"
    with pytest.raises(ValueError, match="Unknown role"):
        prompts.Llama3().render([{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match="only come first"):
        prompts.ChatML().render(CONVERSATION + [{"role": "system", "content": "late"}])
    with pytest.raises(ValueError, match="Two user messages"):
        prompts.Phi3().render([CONVERSATION[0], CONVERSATION[0]])


def test_stop_tokens(bpe_tokenizer_json, tmp_path):
    from litgpt.tokenizer import Tokenizer

    shutil.copy(bpe_tokenizer_json, tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|end_of_text|>"}))
    tokenizer = Tokenizer(tmp_path)
    eos = [tokenizer.eos_id]  # a tuple of lists, as LitGPT returns
    assert prompts.Default().stop_tokens(tokenizer) == (eos,)
    # a stop token this vocabulary lacks is left out rather than failing
    assert prompts.Llama3().stop_tokens(tokenizer) == (eos,)
    assert prompts.Llama3().stop_tokens(tokenizer) == prompts.ChatML().stop_tokens(tokenizer)
    # multi-token stop sequences are kept whole
    answer = prompts.Phi1().stop_tokens(tokenizer)
    assert answer[0] == eos and all(isinstance(s, list) for s in answer)
    template = ChatTemplate("{{ messages[0]['content'] }}", stop_ids=[7, tokenizer.eos_id])
    assert template.stop_tokens(tokenizer) == (eos, [7])


def test_save_and_load_prompt_style(tmp_path):
    assert not has_prompt_style(tmp_path)
    save_prompt_style("alpaca", tmp_path)
    assert has_prompt_style(tmp_path)
    assert (tmp_path / "prompt_style.yaml").read_text() == "class_path: litgpt.prompts.Alpaca\n"
    assert type(load_prompt_style(tmp_path)) is prompts.Alpaca
    # as LitGPT writes it
    (tmp_path / "prompt_style.yaml").write_text("class_path: litgpt.prompts.Qwen2_5\n")
    assert load_prompt_style(tmp_path).apply("Hi") == prompts.Qwen2_5().apply("Hi")
    save_prompt_style(prompts.ChatML("Be brief."), tmp_path)
    assert load_prompt_style(tmp_path).apply("Hi").startswith("<|im_start|>system\nBe brief.<|im_end|>")
    (tmp_path / "prompt_style.yaml").write_text("class_path: litgpt.prompts.Nope\n")
    with pytest.raises(ValueError, match="not a prompt style of litgpt"):
        load_prompt_style(tmp_path)
    (tmp_path / "prompt_style.yaml").write_text("class_path: litgpt.config.Config\n")
    with pytest.raises(ValueError, match="not a prompt style of litgpt"):
        load_prompt_style(tmp_path)
    (tmp_path / "prompt_style.yaml").write_text("class_path: chatml\n")  # a registered name
    assert type(load_prompt_style(tmp_path)) is prompts.ChatML


def test_prompt_style_yaml_never_imports_what_it_names(tmp_path, monkeypatch):
    """A checkpoint's prompt_style.yaml naming a module of its own: the module is not imported (it would run)."""
    import sys

    marker = tmp_path / "ran"
    (tmp_path / "evil_style.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from litgpt.prompts import PromptStyle\n"
        "class Evil(PromptStyle):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for class_path in ("evil_style.Evil", "os.system", "subprocess.Popen"):
        (tmp_path / "prompt_style.yaml").write_text(f"class_path: {class_path}\n")
        with pytest.raises(ValueError, match="never imported"):
            load_prompt_style(tmp_path)
    assert not marker.exists() and "evil_style" not in sys.modules


def test_from_checkpoint_priority(tmp_path):
    folder = tmp_path / "Qwen2.5-7B-Instruct"
    folder.mkdir()
    Config(name="Qwen2.5-7B-Instruct", n_embd=32, n_head=4).save(folder / "model_config.yaml")
    assert type(PromptStyle.from_checkpoint(folder)) is prompts.Qwen2_5
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "T:{{ messages[0].content }}"}))
    style = PromptStyle.from_checkpoint(folder)
    assert isinstance(style, ChatTemplate) and style.apply("Hi") == "T:Hi"
    save_prompt_style("alpaca", folder)
    assert type(PromptStyle.from_checkpoint(folder)) is prompts.Alpaca


def hf_render(template: str, messages, **special_tokens) -> str:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")), **special_tokens)
    hf.chat_template = template
    return hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@pytest.mark.parametrize("template", [OWN_TEMPLATE, QWEN_TEMPLATE, LLAMA3_TEMPLATE], ids=["own", "chatml", "llama3"])
@pytest.mark.parametrize("system", [None, "  Answer in French.  "])
def test_chat_template_matches_transformers(tmp_path, template, system):
    specials = {"bos_token": "<s>", "eos_token": "</s>"}
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": template, "bos_token": "<s>", "eos_token": {"content": "</s>"}})
    )
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 5]}))
    style = ChatTemplate.from_checkpoint(tmp_path)
    assert style.stop_ids == (2, 5)
    messages = ([{"role": "system", "content": system}] if system else []) + CONVERSATION
    for turns in (messages[: len(messages) - 2], messages):
        assert style.render(turns) == hf_render(template, turns, **specials)
    assert style.apply("Hi", sys_prompt=system) == hf_render(
        template, ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "Hi"}], **specials
    )
    if template is OWN_TEMPLATE and system is None:
        assert f"Today is {datetime.now().year}." in style.render(CONVERSATION)


def test_hand_written_styles_equal_the_templates_they_imitate():
    assert prompts.Qwen2_5().render(CONVERSATION) == hf_render(QWEN_TEMPLATE, CONVERSATION)
    assert prompts.Llama3().render(CONVERSATION) == hf_render(LLAMA3_TEMPLATE, CONVERSATION, bos_token="<|begin_of_text|>")


def test_chat_template_sandbox_and_errors(tmp_path):
    with pytest.raises(Exception, match="bad role"):
        ChatTemplate(OWN_TEMPLATE).render([{"role": "tool", "content": "x"}])
    # the sandbox refuses to reach Python internals
    with pytest.raises(Exception):
        ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}").render(CONVERSATION)
    with pytest.raises(Exception):
        ChatTemplate("{% set _ = messages.append(1) %}").render(CONVERSATION)
    assert ChatTemplate("{% generation %}{{ messages[0].content }}{% endgeneration %}").apply("x") == "x"
    # a list of named templates, or a chat_template.jinja file
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": [{"name": "default", "template": "D"}]}))
    assert ChatTemplate.from_checkpoint(tmp_path).apply("x") == "D"
    (tmp_path / "tokenizer_config.json").write_text("{}")
    assert ChatTemplate.from_checkpoint(tmp_path) is None
    (tmp_path / "chat_template.jinja").write_text("J{{ messages | length }}")
    assert ChatTemplate.from_checkpoint(tmp_path).apply("x") == "J1"
    assert ChatTemplate.from_checkpoint(Path(tmp_path / "missing")) is None
