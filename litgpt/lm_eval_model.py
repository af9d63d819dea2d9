"""`LitGPTLM`: EleutherAI lm-eval's model interface over an `LLM`, so the harness runs our model directly.

Text is split into context and continuation tokens exactly as lm-eval's Hugging Face backend does (its
`TemplateLM` base does that), so scores match `lm_eval --model hf` on the converted checkpoint:

    loglikelihood          one forward per batch of right-padded rows; the continuation's log-probs summed
    loglikelihood_rolling  lm-eval's disjoint windows of max_length tokens, scored as above
    generate_until         the continuous `Batcher` over the KV cache; a row stops at EOS, at max_gen_toks,
                           or once its text contains one of the `until` strings (cut there)

Imported by `litgpt evaluate` only when it runs, as it imports lm-eval.
"""

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import normalize_gen_kwargs
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from litgpt.api import LLM
from litgpt.engine.batcher import Batcher, Generation, cut_at_first, stop_at_text

Scored = Tuple[float, bool]
TokenRequest = Tuple[Any, List[int], List[int]]  # (request strings or None, context ids, continuation ids)
T = TypeVar("T")
AUTO_BATCH_START = 64  # "auto" batch sizes start here and halve on out-of-memory errors


class LitGPTLM(TemplateLM):
    """lm-eval's `LM` over a loaded `LLM` (`LLM.load(...)`, on its device).

    Args:
        llm: the model, tokenizer and prompt style.
        batch_size: rows per forward (and sequences decoded together); "auto" or "auto:N" start at 64 and halve
            whenever the device runs out of memory.
        max_gen_toks: tokens generated when a task does not say.
    """

    def __init__(self, llm: LLM, batch_size: Union[int, str] = 1, max_gen_toks: int = 256) -> None:
        super().__init__()
        if llm.model is None:
            raise ValueError("The LLM has no model on a device yet: call `llm.distribute(...)` first")
        self.llm = llm
        auto = isinstance(batch_size, str) and batch_size.startswith("auto")
        if not auto and not (isinstance(batch_size, int) and batch_size > 0):
            raise ValueError(f"batch_size must be a positive integer, 'auto' or 'auto:N', got {batch_size!r}")
        self.auto_batch = auto
        self.batch_size = AUTO_BATCH_START if auto else batch_size
        self._max_gen_toks = max_gen_toks
        if llm.tokenizer.eos_id is None and llm.tokenizer.bos_id is None:
            raise ValueError(f"The tokenizer in {llm.tokenizer.checkpoint_dir} has neither an EOS nor a BOS token")

    # ---- what TemplateLM asks of a model
    @property
    def eot_token_id(self) -> int:
        tokenizer = self.llm.tokenizer
        return tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.bos_id

    @property
    def prefix_token_id(self) -> int:
        # the token that stands in for an empty context: BOS if the model has one, as in lm-eval's HF backend
        tokenizer = self.llm.tokenizer
        return tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id

    @property
    def max_length(self) -> int:
        return self.llm.model.max_seq_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def device(self) -> torch.device:
        return self.llm.device

    def tok_encode(self, string: str, add_special_tokens: Optional[bool] = None, **kwargs: Any) -> List[int]:
        # like HF's `add_special_tokens`: True or None adds BOS only if the model wants one, False never does
        return self.llm.tokenizer.encode(string, bos=False if add_special_tokens is False else None).tolist()

    def get_model_info(self) -> Dict[str, Any]:
        model = self.llm.model
        return {
            "model_name": self.llm.config.name,
            "model_num_parameters": sum(p.numel() for p in model.parameters()),
            "model_dtype": str(model.lm_head.weight.dtype),
        }

    # ---- scoring
    def _loglikelihood_tokens(self, requests: List[TokenRequest], disable_tqdm: bool = False, **kwargs: Any) -> List[Scored]:
        """(sum of the continuation's log-probs, whether greedy decoding would produce it) per request."""
        order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][1]) + len(requests[i][2])))
        scores = self._in_batches([requests[i] for i in order], self._score_batch)
        results: List[Scored] = [(0.0, False)] * len(requests)
        for i, score in zip(order, scores):
            results[i] = score
        return results

    @torch.inference_mode()
    def _score_batch(self, batch: List[TokenRequest]) -> List[Scored]:
        if any(len(continuation) > self.max_length for _, _, continuation in batch):
            raise ValueError(f"A continuation is longer than the model's context of {self.max_length} tokens")
        # the model reads context + continuation minus its last token, truncated on the left to max_length
        inputs = [(context + continuation)[-(self.max_length + 1) :][:-1] for _, context, continuation in batch]
        tokens = torch.zeros(len(batch), max(len(i) for i in inputs), dtype=torch.long, device=self.device)
        for row, ids in enumerate(inputs):
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        logits = self.llm.model(tokens)  # (B, T, V); right padding cannot affect the real tokens of a causal model
        scores = []
        for row, ((_, _, continuation), ids) in enumerate(zip(batch, inputs)):
            n = len(continuation)
            logprobs = logits[row, len(ids) - n : len(ids)].float().log_softmax(dim=-1)  # (n, V)
            target = torch.tensor(continuation, dtype=torch.long, device=self.device)
            picked = logprobs.gather(-1, target.unsqueeze(-1)).sum()
            scores.append((float(picked), bool((logprobs.argmax(dim=-1) == target).all())))
        return scores

    def loglikelihood_rolling(self, requests: List[Any], disable_tqdm: bool = False) -> List[float]:
        """Log-likelihood of whole texts, in windows of up to max_length tokens that each predict new tokens only."""
        windows: List[TokenRequest] = []
        owners: List[int] = []
        for index, request in enumerate(requests):
            (text,) = request.args
            pieces = get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.prefix_token_id, max_seq_len=self.max_length, context_len=1
            )
            for context, continuation in map(make_disjoint_window, pieces):
                windows.append((None, context, continuation))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows)):
            totals[owner] += logprob
        return totals

    # ---- generation
    def generate_until(self, requests: List[Any], disable_tqdm: bool = False) -> List[str]:
        """Greedy (or sampled, if the task asks) continuations, cut at the first of the task's `until` strings."""
        decode = self.llm.tokenizer.decode
        gens, untils = [], []
        for request in requests:
            context, gen_kwargs = request.args
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
            until = [s for s in kwargs.pop("until", None) or [] if s]
            max_new_tokens = kwargs.pop("max_gen_toks")
            room = self.max_length - max_new_tokens
            if room < 1:
                raise ValueError(f"max_gen_toks ({max_new_tokens}) leaves no room for a prompt in the context of {self.max_length} tokens")
            sampled = bool(kwargs.get("do_sample"))
            gens.append(Generation(
                torch.tensor(self.tok_encode(context)[-room:], dtype=torch.long),  # truncated on the left
                max_new_tokens,
                temperature=float(kwargs.get("temperature") or 0.0) if sampled else 0.0,
                top_k=kwargs.get("top_k") if sampled else None,
                top_p=float(kwargs.get("top_p") or 1.0) if sampled else 1.0,
                stop_tokens=[self.eot_token_id],
                on_update=stop_at_text(decode, until) if until else None,
            ))
            untils.append(until)
        gens = self._run_generation(gens)
        return [cut_at_first(decode(gen.tokens), until) for gen, until in zip(gens, untils)]

    def _run_generation(self, gens: List[Generation]) -> List[Generation]:
        """Run every generation to its end; with an "auto" batch size, redo the unfinished ones smaller after OOM."""
        while True:
            batcher = Batcher(self.llm.model, max_batch_size=self.batch_size)
            # longest prompts first, as lm-eval's backends do: memory errors show at once
            for gen in sorted(gens, key=lambda g: -g.prompt.numel()):
                if not gen.done:
                    batcher.add(gen)
            try:
                batcher.run()
                return gens
            except torch.OutOfMemoryError:
                if not self.auto_batch or self.batch_size == 1:
                    raise
                self._shrink_batch()
                gens = [gen if gen.done and gen.finish_reason != "error" else dataclasses.replace(gen) for gen in gens]

    # ---- batching
    def _in_batches(self, items: List[T], fn: Callable[[List[T]], List[Any]]) -> List[Any]:
        out: List[Any] = []
        start = 0
        while start < len(items):
            batch = items[start : start + self.batch_size]
            try:
                out.extend(fn(batch))
            except torch.OutOfMemoryError:
                if not self.auto_batch or self.batch_size == 1:
                    raise
                self._shrink_batch()
                continue
            start += len(batch)
        return out

    def _shrink_batch(self) -> None:
        self.batch_size = max(1, self.batch_size // 2)
        self.llm.model.clear_kv_cache()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
