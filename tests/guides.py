"""What the guide runner (tests/test_guides.py) needs: the guides' code blocks, and the one mapping from model names
to tiny local models.

How a guide is run (the same rules the guides' readers can rely on):

* Blocks: every fenced ```bash and ```python block, top to bottom, in one fresh working folder per guide that
  holds `config_hub/` and `litgpt/data/corpus/` (links to this repository's), so paths read as from the
  repository root. ```text, ```yaml, ```json and ```console blocks are shown, never run.
* Markers: an HTML comment on the line(s) right before a block changes how it runs:
  `<!-- guide-test: skip (REASON) -->` does not run it (only for GPU-only or network-only commands);
  `<!-- guide-test: background -->` starts it (a server) and waits until its port answers, stops it when the guide ends.
* Model names: `TINY_MODELS` below. Each name is served by a local Hub (tests/hub_server.py) as a tiny random
  model of the same architecture, and already downloaded into `checkpoints/` before the guide's first block.
  Registry names for `litgpt pretrain` (pythia-14m, tiny-llama-1.1b...) are not mapped: the guides pretrain
  small entries of the registry.
* Long runs: `SHORT_RUN` is appended to every `litgpt pretrain|finetune*` command (the last value of a flag wins).
* Servers: ports 8000 and 8001 in a guide become free ports on 127.0.0.1.
* Input: `litgpt chat` reads `CHAT_INPUT` from stdin.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]

# name on the Hub -> (transformers config class, its tiny settings). Same architecture, tiny sizes.
TINY_MODELS: Dict[str, tuple] = {
    "microsoft/phi-2": ("PhiConfig", dict(partial_rotary_factor=0.5)),
    "meta-llama/Llama-3.2-1B": ("LlamaConfig", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "meta-llama/Llama-3.2-1B-Instruct": ("LlamaConfig", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "EleutherAI/pythia-14m": ("GPTNeoXConfig", dict(rotary_pct=0.25)),
    "microsoft/Phi-4-mini-instruct": ("Phi3Config", dict(  # LongRoPE (tutorials/long-context.md)
        num_key_value_heads=2, partial_rotary_factor=0.75, tie_word_embeddings=True, pad_token_id=1, original_max_position_embeddings=64,
        rope_scaling={"rope_type": "longrope", "short_factor": [1.0, 1.5, 2.0], "long_factor": [1.0, 4.0, 8.0]})),
}
COMMON_SIZES = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    max_position_embeddings=256, bos_token_id=0, eos_token_id=1)

SHORT_RUN = ["--train.max_steps", "2", "--train.global_batch_size", "2", "--train.micro_batch_size", "1",
             "--train.max_seq_length", "256", "--eval.max_iters", "1", "--train.save_interval", "1", "--devices", "1"]
CHAT_INPUT = "What do llamas eat?\n\n"
GUIDE_PORTS = (8000, 8001)

MARKER = re.compile(r"<!--\s*guide-test:\s*(skip|background)\b[^>]*-->")
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
RUN_LANGUAGES = ("bash", "python")


@dataclass
class Block:
    language: str  # bash or python
    code: str
    line: int  # where the block starts in the guide, for error messages
    marker: Optional[str]  # None, "skip" or "background"


def blocks(markdown: str) -> List[Block]:
    """The guide's ```bash and ```python blocks, in order, with the guide-test marker right before each."""
    found = []
    for match in FENCE.finditer(markdown):
        language = match.group(1)
        if language not in RUN_LANGUAGES:
            continue
        before = markdown[: match.start()].rstrip().splitlines()
        marker = MARKER.search(before[-1]) if before else None
        line = markdown.count("\n", 0, match.start()) + 1
        found.append(Block(language, match.group(2), line, marker.group(1) if marker else None))
    return found


def shorten(code: str) -> str:
    """Append SHORT_RUN to each `litgpt pretrain|finetune*` command line (continuations joined first)."""
    joined = code.replace("\\\n", " ")
    pattern = re.compile(r"^(\s*litgpt (?:pretrain|finetune\w*) (?!list\b)(?!.*--help).*)$", re.M)
    return pattern.sub(lambda m: m.group(1).rstrip() + " " + " ".join(SHORT_RUN), joined)


def make_tiny_repo(folder: Path, name: str, tokenizer_json: Path) -> Path:
    """A Hugging Face folder of `name`'s architecture with tiny random weights and the test BPE tokenizer."""
    import torch
    import transformers
    from tokenizers import Tokenizer

    config_class, extra = TINY_MODELS[name]
    vocab = Tokenizer.from_file(str(tokenizer_json)).get_vocab_size()
    config = getattr(transformers, config_class)(vocab_size=vocab, **COMMON_SIZES, **extra)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    (folder / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}))
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": 1}))
    return folder


def _message_text(node) -> Optional[str]:
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return (_message_text(node.left) or "…") + (_message_text(node.right) or "…")
    return None


def error_messages() -> Dict[str, List[str]]:
    """Every error message the package raises with literal text, {module: [message, ...]}; `…` marks a value."""
    import ast

    found: Dict[str, List[str]] = {}
    for path in sorted((REPO_ROOT / "litgpt").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
                text = _message_text(node.exc.args[0])
                if text and len(text) >= 12:
                    module = str(path.relative_to(REPO_ROOT))
                    message = " ".join(text.split())
                    if message not in found.setdefault(module, []):
                        found[module].append(message)
    return found


if __name__ == "__main__":  # `python tests/guides.py`: the list at the end of tutorials/troubleshooting.md
    for module, messages in error_messages().items():
        print(f"\n### `{module}`\n")
        print("\n".join(f"- {message}" for message in messages))
