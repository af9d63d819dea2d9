"""The tokenizer of a checkpoint folder: `tokenizer.json` (HF `tokenizers`) or `tokenizer.model` (SentencePiece).

Special-token ids and whether a BOS is prepended come from the folder's `tokenizer_config.json`,
`generation_config.json` and `config.json`, as HF writes them.
"""

from functools import cached_property
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import torch

from litgpt.checkpoint import first_line, read_optional_json

TokenIds = Union[torch.Tensor, int, Iterable[int]]


class Tokenizer:
    """Encodes text to token ids and decodes them back, as the checkpoint's model expects.

    Args:
        checkpoint_dir: folder holding `tokenizer.json` or `tokenizer.model`, and optionally
            `tokenizer_config.json`, `generation_config.json` and `config.json`.
    """

    def __init__(self, checkpoint_dir: Union[str, Path]) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        if not self.checkpoint_dir.exists():
            raise FileNotFoundError(
                f"The checkpoint directory does not exist: {self.checkpoint_dir}; expected a folder with tokenizer.json or tokenizer.model"
            )
        self.model_name = self.checkpoint_dir.name
        self.backend, self.processor = self._load_processor()
        tokenizer_config = read_optional_json(self.checkpoint_dir / "tokenizer_config.json")
        self._id_files: Dict[str, Dict[str, Any]] = {}
        self.bos_id = self._special_id("bos", tokenizer_config)
        self.eos_id = self._special_id("eos", tokenizer_config)
        self.use_bos = self._uses_bos(tokenizer_config)

    def _load_processor(self) -> Tuple[str, Any]:
        """The backend's name and its tokenizer object, read from the checkpoint folder."""
        json_path = self.checkpoint_dir / "tokenizer.json"
        model_path = self.checkpoint_dir / "tokenizer.model"
        # tokenizer.json first: when a folder has both, it is the one HF's fast tokenizers use
        if json_path.is_file():
            from tokenizers import Tokenizer as HFTokenizer

            try:
                return "huggingface", HFTokenizer.from_file(str(json_path))
            except Exception as e:
                raise ValueError(f"Could not read tokenizer {json_path}: {first_line(e)}") from e
        if model_path.is_file():
            from sentencepiece import SentencePieceProcessor

            try:
                return "sentencepiece", SentencePieceProcessor(model_file=str(model_path))
            except Exception as e:
                raise ValueError(f"Could not read tokenizer {model_path}: {first_line(e)}") from e
        raise FileNotFoundError(f"No tokenizer in {self.checkpoint_dir}: expected tokenizer.json or tokenizer.model")

    def _special_id(self, kind: str, tokenizer_config: Dict[str, Any]) -> Optional[int]:
        """Resolves the id of the `kind` ("bos" or "eos") token, or None if the checkpoint has none."""
        token = tokenizer_config.get(f"{kind}_token")
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str):
            try:
                return self.token_to_id(token)
            except ValueError:
                pass  # a token string the vocabulary lacks: trust the id files instead
        for name in ("generation_config.json", "config.json"):
            if name not in self._id_files:  # read once for both tokens, and only when needed
                self._id_files[name] = read_optional_json(self.checkpoint_dir / name)
            token_id = self._id_files[name].get(f"{kind}_token_id")
            # generation_config.json may list several stop tokens; the first is the canonical one
            if isinstance(token_id, list):
                token_id = token_id[0] if token_id else None
            if isinstance(token_id, int):
                return token_id
        if self.backend == "sentencepiece":
            token_id = self.processor.bos_id() if kind == "bos" else self.processor.eos_id()
            return token_id if token_id >= 0 else None
        return None

    def _uses_bos(self, tokenizer_config: Dict[str, Any]) -> bool:
        """Whether the model was trained with a BOS token prepended to every sequence."""
        if tokenizer_config.get("add_bos_token") is not None:
            return bool(tokenizer_config["add_bos_token"])
        # Llama 3 style: no `add_bos_token`, but the tokenizer.json post-processor prepends BOS
        if self.backend == "huggingface" and self.bos_id is not None:
            with_specials = self.processor.encode("a").ids
            without = self.processor.encode("a", add_special_tokens=False).ids
            if with_specials[:1] == [self.bos_id] and without[:1] != [self.bos_id]:
                return True
        # HF's Llama tokenizers add BOS by default, so their configs often leave the flag out
        return tokenizer_config.get("tokenizer_class") in ("LlamaTokenizer", "LlamaTokenizerFast")

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included."""
        if self.backend == "huggingface":
            return self.processor.get_vocab_size(with_added_tokens=True)
        return self.processor.get_piece_size()

    def token_to_id(self, token: str) -> int:
        """The id of `token`; raises ValueError if the vocabulary lacks it."""
        if self.backend == "huggingface":
            token_id = self.processor.token_to_id(token)
        else:
            # SentencePiece maps unknown pieces to the unk id instead of failing
            token_id = self.processor.piece_to_id(token)
            if self.processor.id_to_piece(token_id) != token:
                token_id = None
        if token_id is None:
            raise ValueError(f"Token {token!r} is not in the vocabulary of {self.checkpoint_dir}")
        return token_id

    def encode(
        self,
        string: str,
        device: Optional[torch.device] = None,
        bos: Optional[bool] = None,
        eos: bool = False,
        max_length: int = -1,
    ) -> torch.Tensor:
        """Token ids of `string` as a 1-D LongTensor.

        Args:
            string: the text to encode.
            device: where to put the tensor.
            bos: start with the BOS token; None does if the model expects one (`use_bos`). A BOS that
                the text itself starts with is dropped when no BOS is wanted, never doubled.
            eos: end with the EOS token. An EOS that the text itself ends with is dropped when no EOS is
                wanted, never doubled.
            max_length: keep only the first `max_length` ids when positive.
        """
        if self.backend == "huggingface":
            # BOS is our decision, not the post-processor's, so that `bos=False` is honoured
            tokens = self.processor.encode(string, add_special_tokens=False).ids
        else:
            tokens = self.processor.encode(string)
        # The text may carry the special tokens' own strings (`<s>`, `</s>`, `<|end_of_text|>`, a prompt
        # template's BOS): one leading BOS and one trailing EOS of the text are taken off, and `bos`/`eos`
        # alone decide whether the result starts and ends with them, as LitGPT does.
        if self.bos_id is not None and tokens[:1] == [self.bos_id]:
            tokens = tokens[1:]
        if self.eos_id is not None and tokens[-1:] == [self.eos_id]:
            tokens = tokens[:-1]
        if bos or (bos is None and self.use_bos):
            if self.bos_id is None:
                raise ValueError(f"The tokenizer in {self.checkpoint_dir} has no BOS token")
            tokens = [self.bos_id] + tokens
        if eos:
            if self.eos_id is None:
                raise ValueError(f"The tokenizer in {self.checkpoint_dir} has no EOS token")
            tokens = tokens + [self.eos_id]
        if max_length > 0:
            tokens = tokens[:max_length]
        return torch.tensor(tokens, dtype=torch.long, device=device)

    def decode(self, ids: TokenIds) -> str:
        """Text of the token ids (a tensor, a list or one int); special tokens are skipped.

        A lone token is decoded as a continuation, keeping the leading space that SentencePiece-style
        decoders drop at the start of a text, so that printing tokens one by one spaces words right.
        """
        tokens = _as_list(ids)
        if len(tokens) == 1 and self._dummy is not None:
            dummy_id, dummy_text = self._dummy
            text = self._decode_ids([dummy_id] + tokens)
            if text.startswith(dummy_text):
                return text[len(dummy_text) :]
        return self._decode_ids(tokens)

    def decode_stream(self, token_stream: Iterable[TokenIds], context: Optional[TokenIds] = None) -> Iterator[str]:
        """Yields the text of streamed token ids as it becomes complete; see `IncrementalDecoder`."""
        decoder = IncrementalDecoder(self, context)
        for token in token_stream:
            for token_id in _as_list(token):
                if text := decoder.add(token_id):
                    yield text
        if text := decoder.flush():
            yield text

    def _decode_ids(self, tokens: List[int]) -> str:
        """The backend's own decoding, without the lone-token fix."""
        return self.processor.decode(tokens)

    @cached_property
    def _dummy(self) -> Optional[Tuple[int, str]]:
        """A token (id, text) that decodes to the same visible text wherever it stands: left context."""
        candidates = []
        for char in ("\x1e", "#", "a"):
            for piece in (f"<0x{ord(char):02X}>", char):  # a byte-fallback piece, then the bare character
                try:
                    candidates.append(self.token_to_id(piece))
                except ValueError:
                    pass
            candidates.extend(self.encode(char, bos=False).tolist()[:1])
        for token_id in candidates:
            text = self._decode_ids([token_id])
            if text and self._decode_ids([token_id, token_id]) == text * 2:
                return token_id, text
        return None


class IncrementalDecoder:
    """Decodes token ids one at a time into text fragments that never split a character.

    A character spread over several byte-level tokens decodes to U+FFFD until its last byte arrives,
    so text is held back while it ends in U+FFFD. Only the tokens since the last fragment (plus the
    ones before them, for spacing) are decoded, so each step costs O(1) in the length of the stream.
    Without `context`, the fragments concatenate to `tokenizer.decode(all_ids)` (for a single id on
    SentencePiece-style tokenizers, minus the leading space that `decode` keeps for a lone token).

    Args:
        tokenizer: the tokenizer whose ids are decoded.
        context: ids already shown, e.g. the prompt. Their text is not emitted, but it decides spacing:
            the first fragment keeps the leading space it has after the context.
    """

    _CONTEXT_TOKENS = 8  # plenty for any decoder's spacing rules, which look one token back

    def __init__(self, tokenizer: Tokenizer, context: Optional[TokenIds] = None) -> None:
        self.tokenizer = tokenizer
        self._tokens = _as_list(context)[-self._CONTEXT_TOKENS :] if context is not None else []
        # _tokens[_prefix:_read] is already emitted text kept as context; _tokens[_read:] is pending
        self._prefix = 0
        self._read = len(self._tokens)

    def add(self, token_id: int) -> str:
        """Adds one token id; returns the newly completed text, possibly empty."""
        self._tokens.append(int(token_id))
        return self._advance(force=False)

    def flush(self) -> str:
        """Returns the held-back text, even if it ends in an incomplete character (end of stream)."""
        return self._advance(force=True)

    def _advance(self, force: bool) -> str:
        decode = self.tokenizer._decode_ids
        emitted = decode(self._tokens[self._prefix : self._read])
        text = decode(self._tokens[self._prefix :])
        if len(text) <= len(emitted) or (text.endswith("\ufffd") and not force):
            return ""
        # keep the just-emitted tokens as left context for the next step, drop older ones
        self._tokens = self._tokens[self._read :]
        self._prefix, self._read = 0, len(self._tokens)
        return text[len(emitted) :]


def _as_list(ids: TokenIds) -> List[int]:
    if isinstance(ids, torch.Tensor):
        return ids.reshape(-1).tolist()
    if isinstance(ids, int):
        return [ids]
    return [int(i) for i in ids]
