"""Prompt styles: how a model expects a request (or a whole conversation) to be laid out as text.

Three sources, in this order of priority, decide the style of a checkpoint folder (`PromptStyle.from_checkpoint`):

    prompt_style.yaml  (`class_path: litgpt.prompts.Alpaca`, as LitGPT writes it after finetuning)
        > the Jinja `chat_template` of tokenizer_config.json (rendered in a sandbox, as HF does)
        > the model name, matched against `NAME_PATTERNS` (the one place where model names are matched)

A style renders one request with `apply(prompt, sys_prompt=...)` and a conversation, a list of
{"role": "system"|"user"|"assistant", "content": ...} messages, with `render(messages)`; both end where the
model's reply begins. `stop_tokens(tokenizer)` lists the token sequences that end a reply.
"""

import json
import re
from datetime import datetime
from json import dumps
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Type, Union

import yaml

from litgpt.checkpoint import read_optional_json

if TYPE_CHECKING:
    from litgpt.config import Config
    from litgpt.tokenizer import Tokenizer

Message = Dict[str, str]
StopTokens = Tuple[List[int], ...]  # as LitGPT returns them: a tuple of id lists
ROLES = ("system", "user", "assistant")


class PromptStyle:
    """The base style, and the factories that pick a style by name, by config or by checkpoint folder."""

    def apply(self, prompt: Union[str, List[Message]], *, sys_prompt: Optional[str] = None, **kwargs: str) -> str:
        """The text the model should continue to answer `prompt` (a string, or a list of messages)."""
        if isinstance(prompt, list):
            return self.render(prompt, sys_prompt=sys_prompt)
        return prompt

    def render(self, messages: Sequence[Message], *, sys_prompt: Optional[str] = None) -> str:
        """A whole conversation, ending where the next assistant reply starts.

        Styles without a turn format repeat their single-prompt layout per exchange, each reply followed by a
        blank line: the best a completion-style prompt can do.
        """
        system, turns = split_system(messages, sys_prompt)
        text = ""
        for user, reply in pair_turns(turns):
            text += self.apply(user, sys_prompt=system)
            if reply is None:
                return text
            text += reply + "\n\n"
        return text

    def stop_tokens(self, tokenizer: "Tokenizer") -> StopTokens:
        """Token-id sequences that end a reply: the EOS token, plus what the style adds (`extra_stops`)."""
        return token_sequences(tokenizer, [tokenizer.eos_id], *self.extra_stops(tokenizer))

    def extra_stops(self, tokenizer: "Tokenizer") -> List[List[Union[int, str]]]:
        """Stop sequences besides EOS, as lists of token ids or token strings."""
        return []

    @classmethod
    def from_name(cls, name: str) -> "PromptStyle":
        """The style registered under `name` in `prompt_styles` (e.g. "alpaca", "llama3")."""
        if name not in prompt_styles:
            raise ValueError(f"Unknown prompt style {name!r}; choose one of {', '.join(prompt_styles)}")
        return prompt_styles[name]()

    @classmethod
    def from_config(cls, config: "Config") -> "PromptStyle":
        """The style that the model name in `config` implies."""
        return model_name_to_prompt_style(config.name)

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: Union[str, Path], config: Optional["Config"] = None) -> "PromptStyle":
        """prompt_style.yaml, else the folder's chat template, else the style of the model name."""
        checkpoint_dir = Path(checkpoint_dir)
        if has_prompt_style(checkpoint_dir):
            return load_prompt_style(checkpoint_dir)
        template = ChatTemplate.from_checkpoint(checkpoint_dir)
        if template is not None:
            return template
        if config is None:
            from litgpt.config import Config

            config = Config.from_checkpoint(checkpoint_dir)
        return cls.from_config(config)


def split_system(messages: Sequence[Message], sys_prompt: Optional[str]) -> Tuple[Optional[str], List[Message]]:
    """The system prompt (a leading system message wins over `sys_prompt`) and the other messages, validated."""
    messages = list(messages)
    for i, message in enumerate(messages):
        if message.get("role") not in ROLES:
            raise ValueError(f"Unknown role {message.get('role')!r}; the roles are {', '.join(ROLES)}")
        if message["role"] == "system" and i > 0:
            raise ValueError("A 'system' message may only come first in a conversation")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"Message {i} has no text 'content'")
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return sys_prompt, messages


def pair_turns(messages: Sequence[Message]) -> List[Tuple[str, Optional[str]]]:
    """(user, reply) pairs; the last reply is None when the conversation ends with a user message."""
    pairs: List[Tuple[str, Optional[str]]] = []
    for message in messages:
        if message["role"] == "user":
            if pairs and pairs[-1][1] is None:
                raise ValueError("Two user messages in a row; this prompt style alternates user and assistant")
            pairs.append((message["content"], None))
        elif not pairs or pairs[-1][1] is not None:
            raise ValueError("An assistant message must answer a user message")
        else:
            pairs[-1] = (pairs[-1][0], message["content"])
    if not pairs:
        raise ValueError("The conversation has no user message")
    return pairs


def token_sequences(tokenizer: "Tokenizer", *sequences: Sequence[Union[int, str, None]]) -> StopTokens:
    """Stop sequences as id lists; a sequence with a token the tokenizer cannot name an id for is left out.

    Token strings are looked up with `tokenizer.token_to_id` where the tokenizer has one (any object with an
    `eos_id` will do: without the lookup, only the sequences given as ids remain).
    """
    token_to_id = getattr(tokenizer, "token_to_id", None)
    result: List[List[int]] = []
    for sequence in sequences:
        ids = []
        for token in sequence:
            if isinstance(token, str):
                try:
                    token = token_to_id(token) if callable(token_to_id) else None
                except (ValueError, KeyError):  # ours raises ValueError, a dict-backed vocabulary KeyError
                    token = None
            if token is None:
                break
            ids.append(int(token))
        else:
            if ids and ids not in result:
                result.append(ids)
    return tuple(result)


class Default(PromptStyle):
    """The prompt as it is."""


class _Template(PromptStyle):
    """A style given by one template per line: '{prompt}' (and '{sys_prompt}') fill in."""

    template = "{prompt}"
    default_system = ""

    def apply(self, prompt, *, sys_prompt=None, **kwargs):
        if isinstance(prompt, list):
            return self.render(prompt, sys_prompt=sys_prompt)
        return self.template.format(prompt=prompt, sys_prompt=sys_prompt or self.default_system)


TASK = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
TASK_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
)


class _Instruction(_Template):
    """The instruction layout of the Alpaca-style data sets."""

    template = "{sys_prompt}### Instruction:\n{prompt}\n\n### Response:\n"
    default_system = TASK


class Alpaca(_Instruction):
    """With an '### Input:' section (and its own system text) when the record has an input."""

    def apply(self, prompt, *, sys_prompt=None, **kwargs):
        if kwargs.get("input") and not isinstance(prompt, list):
            system = sys_prompt or TASK_WITH_INPUT
            return f"{system}### Instruction:\n{prompt}\n\n### Input:\n{kwargs['input']}\n\n### Response:\n"
        return super().apply(prompt, sys_prompt=sys_prompt)


class FLAN(_Instruction):
    """Instruction and response; an input, if given, is left out."""


class Longform(_Instruction):
    default_system = TASK_WITH_INPUT


class Falcon(_Template):
    template = "{prompt}\nAnswer:"

    def extra_stops(self, tokenizer):
        # Falcon seldom emits EOS; it starts the next "User:" turn instead (193 is its newline token)
        return [["User", ":"], [193, "User"]]


class Platypus(_Template):
    template = "### Instruction:\n\n{prompt}\n\n### Response:\n"


class StableCode(_Template):
    template = "###Instruction\n{prompt}###Response\n"


class Phi1(_Template):
    template = "{prompt}\n\nAnswer:"

    def extra_stops(self, tokenizer):
        return [["Answer", ":"], [198, "Answer", ":"]]  # 198 is the GPT-2 newline token


class Phi2(_Template):
    template = "Instruct: {prompt}\nOutput:"


class Llama2FunctionCalling(PromptStyle):
    FUNCTION = {
        "function": "search_bing",
        "description": "Search the web for content on Bing. This allows users to search online/the internet/the web for content.",
        "arguments": [{"name": "query", "type": "string", "description": "The search query string"}],
    }

    def apply(self, prompt, *, sys_prompt=None, **kwargs):
        if isinstance(prompt, list):
            return self.render(prompt, sys_prompt=sys_prompt)
        system = sys_prompt or (
            "You are a helpful, respectful and honest assistant. Always answer as helpfully as"
            "possible. Your only response should be JSON formatted functions"
        )
        # the model was trained on the function list with its braces doubled
        functions = dumps(self.FUNCTION).replace("{", "{{").replace("}", "}}")
        return f"<FUNCTIONS>{functions}</FUNCTIONS>\n\n[INST]<<SYS>>\n{system.strip()}\n<</SYS>>\n\n{prompt}[/INST]\n\n"


class Turns(PromptStyle):
    """A chat format given as one template per role, so that one prompt and a conversation render alike.

        prefix + system + (user + assistant)* + user + generation

    Most formats wrap every role alike: `turn` is that template, with a '{role}' field that `role_names` fill in.
    A role whose turn looks different has its own template (`system`, `user`, `assistant`). Without a system
    template, `merge_system` folds the system prompt into the first user message. Every template has one
    '{content}' field; `generation`, what opens the model's reply, is the assistant template up to it.
    """

    prefix = ""
    turn: Optional[str] = None
    role_names: Tuple[Optional[str], str, str] = ROLES  # None: the format has no system turn
    system: Optional[str] = None
    user: Optional[str] = None
    assistant: Optional[str] = None
    merge_system = "{system}\n\n{content}"
    default_system: Optional[str] = None
    strip = False  # strip message contents in conversations (Llama 3 does)
    stops: Tuple[str, ...] = ()

    def apply(self, prompt, *, sys_prompt=None, **kwargs):
        if isinstance(prompt, list):
            return self.render(prompt, sys_prompt=sys_prompt)
        return self._render([{"role": "user", "content": prompt}], sys_prompt, strip=False)

    def render(self, messages, *, sys_prompt=None):
        return self._render(messages, sys_prompt, strip=self.strip)

    def _render(self, messages: Sequence[Message], sys_prompt: Optional[str], strip: bool) -> str:
        system, turns = split_system(messages, sys_prompt)
        pair_turns(turns)  # checks that user and assistant alternate
        system = system or self.default_system
        system_turn = self.template("system")
        text = self.prefix
        if system and system_turn is not None:
            text += system_turn.format(content=system.strip() if strip else system)
        for i, message in enumerate(turns):
            content = message["content"].strip() if strip else message["content"]
            if i == 0 and system and system_turn is None:
                content = self.merge_system.format(system=system, content=content)
            text += self.template(message["role"]).format(content=content)
        return text + self.generation

    def template(self, role: str) -> Optional[str]:
        """The template of `role`'s turns: its own, else `turn` named for it, else (none for system) the bare content."""
        own = getattr(self, role)
        if own is not None:
            return own
        name = self.role_names[ROLES.index(role)]
        if self.turn is not None and name is not None:
            return self.turn.replace("{role}", name)
        return None if role == "system" else "{content}"

    @property
    def generation(self) -> str:
        """What opens the model's reply (a style whose reply opens otherwise sets it, as CodeLlama does)."""
        return self.template("assistant").split("{content}")[0]

    def extra_stops(self, tokenizer):
        return [[token] for token in self.stops]


class StableLMAlpha(Turns):
    turn = "<|{role}|>{content}"
    role_names = ("SYSTEM", "USER", "ASSISTANT")
    default_system = (
        "# StableLM Tuned (Alpha version)\n- StableLM is a helpful and harmless open-source AI language model developed"
        " by StabilityAI.\n- StableLM is excited to be able to help the user, but will refuse to do anything that could"
        " be considered harmful to the user.\n- StableLM is more than just an information source, StableLM is also able"
        " to write poetry, short stories, and make jokes.\n- StableLM will refuse to participate in anything that could"
        " harm a human."
    )
    stops = ("<|SYSTEM|>", "<|ASSISTANT|>", "<|USER|>")


class StableLMZephyr(Turns):
    turn = "<|{role}|>\n{content}<|endoftext|>\n"
    stops = ("<|endoftext|>",)


class Falcon3(StableLMZephyr):
    pass


class Llama2(Turns):
    merge_system = "<<SYS>>\n{system}\n<</SYS>>\n\n {content}"
    user = "[INST] {content} [/INST] "
    assistant = "{content} </s><s>"
    default_system = (
        "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe."
        "  Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content."
        " Please ensure that your responses are socially unbiased and positive in nature.\n\nIf a question does not make"
        " any sense, or is not factually coherent, explain why instead of answering something not correct. If you don't"
        " know the answer to a question, please don't share false information."
    )


class CodeLlama(Turns):
    """CodeLlama, and Mistral / Mixtral instruct: no default system prompt."""

    merge_system = "<<SYS>>\n{system}\n<</SYS>>\n\n{content}"
    user = "[INST] {content} [/INST]"
    assistant = " {content}</s>"
    generation = ""  # the model writes the leading space of its reply itself


class Llama3(Turns):
    prefix = "<|begin_of_text|>"
    turn = "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"
    default_system = "You are a helpful assistant."
    strip = True
    stops = ("<|eot_id|>",)


class R1Base(Turns):
    turn = "<｜{role}｜>{content}"
    role_names = ("System", "User", "Assistant")
    system = "{content}"
    strip = True
    stops = ("<｜end▁of▁sentence｜>",)


class FreeWilly2(Turns):
    turn = "### {role}:\n{content}\n\n"
    role_names = ("System", "User", "Assistant")
    default_system = "This is a system prompt, please behave and help the user."


class Phi3(Turns):
    turn = "<|{role}|>\n{content}<|end|>\n"
    default_system = "You are a helpful assistant."
    stops = ("<|end|>",)


class Phi4(Turns):
    turn = "<|im_start|>{role}<|im_sep|>{content}<|im_end|>"
    stops = ("<|im_end|>",)


class Phi4Reasoning(Phi4):
    default_system = (
        "You are Phi, a language model trained by Microsoft to help users. Your role as an assistant involves thoroughly"
        " exploring questions through a systematic thinking process before providing the final precise and accurate"
        " solutions. This requires engaging in a comprehensive cycle of analysis, summarizing, exploration, reassessment,"
        " reflection, backtracing, and iteration to develop well-considered thinking process. Please structure your"
        " response into two main sections: Thought and Solution using the specified format: <think> {Thought section}"
        " </think> {Solution section}. In the Thought section, detail your reasoning process in steps. Each step should"
        " include detailed considerations such as analysing questions, summarizing relevant findings, brainstorming new"
        " ideas, verifying the accuracy of the current steps, refining any errors, and revisiting previous steps. In the"
        " Solution section, based on various attempts, explorations, and reflections from the Thought section,"
        " systematically present the final solution that you deem correct. The Solution section should be logical,"
        " accurate, and concise and detail necessary steps needed to reach the conclusion. Now, try to solve the"
        " following question through the above guidelines:"
    )


class Phi4Mini(Turns):
    turn = "<|{role}|>{content}<|end|>"
    stops = ("<|end|>",)


class Phi4MiniReasoning(Phi4Mini):
    default_system = "Your name is Phi, an AI math expert developed by Microsoft."


class TinyLlama(Turns):
    turn = "<|{role}|>\n{content}</s>\n"
    default_system = "You are a friendly chatbot who always gives helpful, detailed, and polite answers."


class Gemma(Turns):
    turn = "<start_of_turn>{role}\n{content}<end_of_turn>\n"
    role_names = (None, "user", "model")
    stops = ("<end_of_turn>",)


class OLMo(Turns):
    prefix = "<|endoftext|>"
    turn = "<|{role}|>\n{content}\n"
    assistant = "<|assistant|>\n{content}<|endoftext|>\n"


class ChatML(Turns):
    turn = "<|im_start|>{role}\n{content}<|im_end|>\n"
    stops = ("<|im_end|>",)

    def __init__(self, system_message: Optional[str] = None) -> None:
        if system_message is not None:
            self.default_system = system_message


class Qwen2_5(ChatML):
    default_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


class Qwen2_5_Math(ChatML):
    default_system = "Please reason step by step, and put your final answer within \\boxed{}."


class QwQ(ChatML):
    default_system = "You are a helpful and harmless assistant. You are Qwen developed by Alibaba. You should think step-by-step."


class Qwen3(ChatML):
    pass


class SmolLM2(ChatML):
    default_system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


class Salamandra(ChatML):
    default_system = (
        "I am Salamandra, an AI language model developed at the Barcelona Supercomputing Centre (BSC) by the Language"
        " Technologies Unit. My knowledge base was last updated on August 2023. Today Date: 2024-09-30\nSoy Salamandra,"
        " un modelo lingüístico de IA desarrollado en el Barcelona Supercomputing Centre (BSC) por la Language"
        " Technologies Unit. Mi base de conocimientos se actualizó por última vez en agosto de 2023.\nSoc Salamandra, un"
        " model de llenguatge d'IA desenvolupat al Barcelona Supercomputing Centre (BSC) per la Language Technologies"
        " Unit."
    )


class ChatTemplate(PromptStyle):
    """A Hugging Face Jinja chat template, rendered in a sandbox with the variables HF passes to it.

    Args:
        template: the Jinja source.
        bos_token, eos_token: the texts the template may insert.
        stop_ids: token ids that end a reply besides the tokenizer's EOS (generation_config.json's eos list).
        origin: where the template comes from (a file), named in its errors.

    A template that does not parse, raises (`raise_exception`) or is stopped by the sandbox gives a one-line
    ValueError naming `origin`.
    """

    def __init__(
        self, template: str, bos_token: str = "", eos_token: str = "", stop_ids: Sequence[int] = (),
        origin: str = "the chat template",
    ) -> None:
        self.source = template
        self.bos_token, self.eos_token = bos_token, eos_token
        self.stop_ids = tuple(stop_ids)
        self.origin = origin
        try:
            self._template = _jinja_environment().from_string(template)
        except Exception as error:  # jinja's TemplateSyntaxError
            raise ValueError(f"The chat template in {origin} does not parse: {_one_line(error)}") from None

    def apply(self, prompt, *, sys_prompt=None, **kwargs):
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        return self.render(messages, sys_prompt=sys_prompt)

    def render(self, messages, *, sys_prompt=None, add_generation_prompt: bool = True, **variables: Any) -> str:
        messages = [dict(message) for message in messages]
        if sys_prompt and not (messages and messages[0].get("role") == "system"):
            messages.insert(0, {"role": "system", "content": sys_prompt})
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **variables,
            )
        except Exception as error:  # its raise_exception, a sandbox refusal (SecurityError), any error of its code
            raise ValueError(f"The chat template in {self.origin} failed: {_one_line(error)}") from None

    def extra_stops(self, tokenizer):
        return [[token_id] for token_id in self.stop_ids]

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: Union[str, Path]) -> Optional["ChatTemplate"]:
        """The folder's chat template (tokenizer_config.json or chat_template.jinja), or None if it has none."""
        checkpoint_dir = Path(checkpoint_dir)
        tokenizer_config = read_optional_json(checkpoint_dir / "tokenizer_config.json")
        template = tokenizer_config.get("chat_template")
        if isinstance(template, list):  # named templates: HF uses "default"
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        origin = checkpoint_dir / "tokenizer_config.json"
        jinja_file = checkpoint_dir / "chat_template.jinja"
        if not template and jinja_file.is_file():
            template, origin = jinja_file.read_text(encoding="utf-8"), jinja_file
        if not isinstance(template, str) or not template.strip():
            return None
        eos_ids = read_optional_json(checkpoint_dir / "generation_config.json").get("eos_token_id", [])
        eos_ids = [eos_ids] if isinstance(eos_ids, int) else [i for i in eos_ids if isinstance(i, int)]
        bos, eos = _token_text(tokenizer_config.get("bos_token")), _token_text(tokenizer_config.get("eos_token"))
        return cls(template, bos, eos, eos_ids, origin=str(origin))


def _generation_tag():
    """`{% generation %}...{% endgeneration %}` (marks assistant text for HF's training masks): rendered as is."""
    from jinja2 import nodes
    from jinja2.ext import Extension

    class GenerationTag(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return GenerationTag


def _jinja_environment():
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    _GenerationTag = _generation_tag()
    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def strftime_now(format: str) -> str:
        return datetime.now().strftime(format)

    def tojson(value: Any, ensure_ascii: bool = False, indent: Optional[int] = None, separators=None, sort_keys: bool = False) -> str:
        # HF's filter: unlike jinja's own, it does not escape HTML characters
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols", _GenerationTag]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _token_text(token: Any) -> str:
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) else ""


# Maps prompt style names to PromptStyle classes
prompt_styles: Dict[str, Type[PromptStyle]] = {
    # dataset styles
    "alpaca": Alpaca,
    "flan": FLAN,
    "longform": Longform,
    # model styles
    "stablelm-alpha": StableLMAlpha,
    "stablelm-zephyr": StableLMZephyr,
    "falcon": Falcon,
    "falcon3": Falcon3,
    "llama2-function-calling": Llama2FunctionCalling,
    "llama2": Llama2,
    "freewilly2": FreeWilly2,
    "platypus": Platypus,
    "stablecode": StableCode,
    "codellama": CodeLlama,
    "phi-1": Phi1,
    "phi-2": Phi2,
    "phi-3": Phi3,
    "phi-4": Phi4,
    "phi-4-reasoning": Phi4Reasoning,
    "phi-4-mini": Phi4Mini,
    "phi-4-mini-reasoning": Phi4MiniReasoning,
    "tinyllama": TinyLlama,
    "gemma": Gemma,
    "llama3": Llama3,
    "r1-base": R1Base,
    "olmo": OLMo,
    "chatml": ChatML,
    "qwen2.5": Qwen2_5,
    "qwen2.5-math": Qwen2_5_Math,
    "qwq": QwQ,
    "qwen3": Qwen3,
    "smollm2": SmolLM2,
    "salamandra": Salamandra,
    "default": Default,
}

# The one table that matches model names: the first pattern found in the name picks the style. Names are
# LitGPT's registry names; a few patterns also take the Hugging Face spelling of the same model.
NAME_PATTERNS: List[Tuple[str, Type[PromptStyle]]] = [
    (r"stablelm-tuned-alpha", StableLMAlpha),
    (r"stablelm-zephyr-3b", StableLMZephyr),
    (r"stablecode-instruct", StableCode),
    (r"Falcon3.*-Instruct", Falcon3),
    (r"falcon.*-instruct", Falcon),
    (r"Llama-2-7b-chat-hf-function-calling-v2", Llama2FunctionCalling),
    (r"Llama-2.*-chat", Llama2),
    (r"Llama-3.*-Instruct", Llama3),
    (r"OLMo-2.*-(Instruct|SFT|DPO)", Llama3),
    (r"R1", R1Base),
    (r"FreeWilly2", FreeWilly2),
    (r"Platypus", Platypus),
    (r"CodeLlama|Mi[sx]tral.*Instruct", CodeLlama),
    (r"phi-1", Phi1),
    (r"phi-2", Phi2),
    (r"Phi-3", Phi3),
    (r"Phi-4-reasoning", Phi4Reasoning),
    (r"Phi-4-mini-reasoning", Phi4MiniReasoning),
    (r"Phi-4-mini", Phi4Mini),
    (r"phi-4", Phi4),
    (r"tiny-llama.*chat|TinyLlama.*Chat", TinyLlama),
    (r"(Code)?[Gg]emma.*-it", Gemma),
    (r"OLMo.*-hf", OLMo),
    (r"Qwen2\.5-Math-.*", Qwen2_5_Math),
    (r"Qwen2\.5-.*", Qwen2_5),
    (r"QwQ-.*", QwQ),
    (r"Qwen3-.*", Qwen3),
    (r"SmolLM2.*-Instruct", SmolLM2),
    (r"salamandra-.*-instruct", Salamandra),
]


def model_name_to_prompt_style(model_name: str) -> PromptStyle:
    """The style of a model name (`NAME_PATTERNS`), Default if none matches."""
    for pattern, style in NAME_PATTERNS:
        if re.search(pattern, model_name):
            return style()
    return Default()


def save_prompt_style(style: Union[str, PromptStyle], checkpoint_dir: Union[str, Path]) -> None:
    """Write prompt_style.yaml (`class_path: module.Class`) as LitGPT does."""
    style = PromptStyle.from_name(style) if isinstance(style, str) else style
    if isinstance(style, ChatTemplate):
        raise ValueError("A chat template is saved with the tokenizer files (tokenizer_config.json), not as prompt_style.yaml")
    cls = type(style)
    content: Dict[str, Any] = {"class_path": f"{cls.__module__}.{cls.__name__}"}
    if type(style) is ChatML and style.default_system is not None:
        content["init_args"] = {"system_message": style.default_system}
    with open(Path(checkpoint_dir) / "prompt_style.yaml", "w", encoding="utf-8") as file:
        yaml.safe_dump(content, file)


def load_prompt_style(checkpoint_dir: Union[str, Path]) -> PromptStyle:
    """The style named by prompt_style.yaml's `class_path`: a style of this module or a registered one.

    The file comes with checkpoints from anyone, so nothing it names is imported: `class_path` must be one of
    `litgpt.prompts`' styles (as LitGPT writes it), a class registered in `prompt_styles`, or a registered name.
    """
    path = Path(checkpoint_dir) / "prompt_style.yaml"
    with open(path, encoding="utf-8") as file:
        content = yaml.safe_load(file)
    class_path = content.get("class_path") if isinstance(content, dict) else None
    if not isinstance(class_path, str) or not class_path:
        raise ValueError(f"{path} needs a 'class_path: litgpt.prompts.ClassName' entry")
    cls = _known_styles().get(class_path)
    if cls is None:
        raise ValueError(
            f"{path}: {class_path!r} is not a prompt style of litgpt (use litgpt.prompts.<Style> or a name registered "
            "in litgpt.prompts.prompt_styles; other classes are never imported from a checkpoint's files)"
        )
    init_args = content.get("init_args") or {}
    try:
        return cls(**init_args)
    except TypeError as e:
        raise ValueError(f"{path}: bad init_args for {class_path}: {e}") from None


def _known_styles() -> Dict[str, Type[PromptStyle]]:
    """class paths and registered names that prompt_style.yaml may name."""
    known: Dict[str, Type[PromptStyle]] = {
        f"litgpt.prompts.{name}": obj
        for name, obj in globals().items()
        if isinstance(obj, type) and issubclass(obj, PromptStyle) and not name.startswith("_")
    }
    known.update({f"{cls.__module__}.{cls.__name__}": cls for cls in prompt_styles.values()})
    known.update(prompt_styles)
    return known


def has_prompt_style(checkpoint_dir: Union[str, Path]) -> bool:
    return (Path(checkpoint_dir) / "prompt_style.yaml").is_file()
