"""`litgpt chat`: talk with a model in the terminal; the conversation keeps its history across turns.

Each turn re-renders the whole conversation with the prompt style (or chat template), feeds only the tokens
after the part already in the KV cache, and drops the oldest exchanges when the context fills up.
"""

import sys
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional

from litgpt.generate.flags import command

if TYPE_CHECKING:
    import torch

    from litgpt.model import GPT
    from litgpt.prompts import PromptStyle
    from litgpt.tokenizer import Tokenizer

EXIT_WORDS = ("!quit", "!exit")


@command(
    (
        "checkpoint_dir", "*", "max_new_tokens", "top_k", "top_p", "temperature", "quantize", "precision", "compile",
        "multiline", "access_token", "system_prompt",
    ),
    checkpoint_dir="A checkpoint folder, ORG/NAME under checkpoints/, or a model name to download.",
    max_new_tokens="The most tokens per reply.",
    compile="Compile the decoding step with torch.compile (slower start, faster replies).",
    multiline=(bool, False, "Read prompts of several lines (blank ones too), each sent by a line '!submit'."),
    access_token=(Optional[str], None, "Hugging Face token, to download a gated model."),
    system_prompt=(Optional[str], None, "The system prompt, for prompt styles and chat templates that have one."),
)
def chat(args: SimpleNamespace) -> None:
    """Chat with a model: type a prompt, read the streamed reply; an empty prompt exits, Ctrl-C stops a reply."""
    import torch

    from litgpt.api import LLM
    from litgpt.generate.cli import check_flags, print_memory

    check_flags(args)
    llm = LLM.load(
        str(args.checkpoint_dir), access_token=args.access_token, precision=args.precision, quantize=args.quantize,
        compile=args.compile,
    )
    conversation = Conversation(
        llm.model,
        llm.tokenizer,
        llm.prompt_style,
        system_prompt=args.system_prompt,
        max_new_tokens=args.max_new_tokens,
        sampling=dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p),
        step=llm.decode_step,
    )
    instructions = "To exit, press 'Enter' on an empty prompt."
    if args.multiline:
        instructions = (
            "A prompt may span several lines, blank ones included: send it with a line that says !submit.\n"
            "To exit, type !quit or !exit on the first line of a prompt (or submit an empty prompt)."
        )
    print(f"Now chatting with {llm.config.name}.\n{instructions}\n")
    torch.manual_seed(1234)
    while (prompt := read_prompt(args.multiline)) is not None:
        print(">> Reply: ", end="", flush=True)
        start = time.perf_counter()
        try:
            tokens = conversation.reply(prompt, write=lambda text: print(text, end="", flush=True))
        except ValueError as error:  # e.g. a prompt longer than the context
            print(f"\n{error}", file=sys.stderr)
            continue
        seconds = time.perf_counter() - start
        print(
            f"\nTime for inference: {seconds:.02f} sec total, {tokens / seconds:.02f} tokens/sec, {tokens} tokens",
            file=sys.stderr,
        )
        print()
    print_memory([llm.device], start="\n")


def read_prompt(multiline: bool = False) -> Optional[str]:
    """The next prompt from stdin; None to end the chat (an empty prompt, !quit or !exit, end of input or Ctrl-C).

    With `multiline`, lines are gathered until one that says !submit, !quit or !exit (or the end of input); blank
    lines stay in the prompt, and the chat ends only when nothing came before that line. The commands are read
    without regard to case, as LitGPT does.
    """
    try:
        if not multiline:
            text = input(">> Prompt: ")
        else:
            print(">> Prompt (a line !submit sends it):", flush=True)
            text = _read_until_submit()
    except (EOFError, KeyboardInterrupt):
        return None
    text = text.strip()
    return None if not text or text.lower() in EXIT_WORDS else text


def _read_until_submit() -> str:
    """Lines up to a line !submit, !quit or !exit (each sends what came before it, as in LitGPT), joined. EOFError
    if there are none."""
    lines: List[str] = []
    while True:
        try:
            line = input()
        except EOFError:
            if not lines:
                raise
            break
        if line.strip().lower() in ("!submit", *EXIT_WORDS):
            break
        lines.append(line)
    return "\n".join(lines)


class Conversation:
    """The messages so far and the tokens in the model's KV cache; `reply` adds one exchange.

    Args:
        model: the GPT, on its device.
        tokenizer: its tokenizer.
        style: renders the conversation (a PromptStyle or a chat template).
        system_prompt: the system prompt, if any.
        max_new_tokens: the most tokens per reply.
        sampling: temperature, top_k and top_p.
        step: the decode step (see `litgpt.engine.core`).
    """

    def __init__(
        self,
        model: "GPT",
        tokenizer: "Tokenizer",
        style: "PromptStyle",
        system_prompt: Optional[str] = None,
        max_new_tokens: int = 50,
        sampling: Optional[Dict[str, Any]] = None,
        step: Optional[Callable] = None,
    ) -> None:
        from litgpt.engine.core import decode_step

        self.model, self.tokenizer, self.style = model, tokenizer, style
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling or {}
        self.step = step or decode_step
        self.stop_tokens = style.stop_tokens(tokenizer)
        self.messages: List[Dict[str, str]] = []
        self.cached: List[int] = []  # the tokens whose keys and values are in the KV cache, from position 0
        self.last_prompt = ""  # the rendered text of the latest turn, for inspection

    def reply(self, prompt: str, write: Callable[[str], None]) -> int:
        """Answer `prompt`, passing the reply to `write` piece by piece; the number of tokens generated.

        Ctrl-C (KeyboardInterrupt) ends the reply early; what was generated so far stays in the history.
        """
        from litgpt.engine.core import ensure_kv_cache
        from litgpt.engine.batcher import generate_tokens

        self.messages.append({"role": "user", "content": prompt})
        ids = self._encode_fitting()
        if ensure_kv_cache(self.model, 1, len(ids) + self.max_new_tokens - 1, multiple=512):
            self.cached = []
        start = _common_prefix(self.cached, ids)
        device = self.model.lm_head.weight.device
        reply: List[int] = []
        tokens = generate_tokens(
            self.model,
            _tensor(ids, device),
            self.max_new_tokens,
            stop_tokens=self.stop_tokens,
            cached=start,
            step=self.step,
            **self.sampling,
        )
        pieces = self.tokenizer.decode_stream(_recorded(tokens, reply), context=ids)
        try:
            for piece in pieces:
                write(piece)
        except KeyboardInterrupt:
            pass
        finally:
            pieces.close()
            tokens.close()
        # every yielded token but the last has been fed to the model; without any, only the old prefix is sure
        self.cached = ids + reply[:-1] if reply else ids[:start]
        self.messages.append({"role": "assistant", "content": self.tokenizer.decode(reply)})
        return len(reply)

    def _encode_fitting(self) -> List[int]:
        """The rendered conversation's ids, after dropping the oldest exchanges that do not fit the context.

        If the last prompt does not fit even alone, the history is left as it was and ValueError is raised.
        """
        messages = list(self.messages)
        while True:
            text = self.style.render(messages, sys_prompt=self.system_prompt)
            ids = self.tokenizer.encode(text).tolist()
            if len(ids) + self.max_new_tokens <= self.model.max_seq_length:
                self.messages, self.last_prompt = messages, text
                return ids
            if len(messages) <= 1:
                self.messages.pop()
                raise ValueError(
                    f"The prompt ({len(ids)} tokens) plus max_new_tokens ({self.max_new_tokens}) does not fit the "
                    f"model's context of {self.model.max_seq_length} tokens"
                )
            messages = messages[2:]  # the oldest user message and its reply


def _recorded(tokens: Iterator[int], into: List[int]) -> Iterator[int]:
    for token in tokens:
        into.append(token)
        yield token


def _common_prefix(a: List[int], b: List[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _tensor(ids: List[int], device: "torch.device") -> "torch.Tensor":
    import torch

    return torch.tensor(ids, dtype=torch.long, device=device)
