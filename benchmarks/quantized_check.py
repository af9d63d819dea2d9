"""Sanity and memory of bitsandbytes-quantized inference (`--quantize bnb.*`) against the bf16 model.

    python benchmarks/quantized_check.py                   # Llama-3.2-1B: bf16, bnb.int8, bnb.nf4, bnb.nf4-dq

One random-weight model (the layers' default initialisation, so logits have some spread) is quantized the way
`LLM.load(..., quantize=...)` and the `--quantize` flags do it (`litgpt.quantize.quantize_linears`). For each mode:
the GPU memory its weights take, whether the logits over a 128-token prompt are finite, their cosine similarity
to the bf16 model's and how often their top-1 agrees, how many of 64 greedy tokens agree with bf16's before the
first difference, and the eager decoding speed after the first token (`decode_throughput.generation_rates`; the
quantized layers cannot be captured in CUDA graphs). Needs bitsandbytes and a CUDA GPU.
"""

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import emit, equal_prefix, table  # noqa: E402
from decode_throughput import generation_rates  # noqa: E402

from litgpt.quantize import QUANTIZE_MODES, quantize_linears  # noqa: E402
from litgpt.config import Config  # noqa: E402
from litgpt.engine.core import decode_step, ensure_kv_cache  # noqa: E402
from litgpt.model import GPT  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="Llama-3.2-1B")
    parser.add_argument("--modes", nargs="+", default=["bnb.int8", "bnb.nf4", "bnb.nf4-dq"], choices=QUANTIZE_MODES)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=64)
    args = parser.parse_args()
    config = Config.from_name(args.model)
    torch.manual_seed(0)
    source = GPT(config).to(torch.bfloat16)  # on the CPU; each mode quantizes a copy as it moves to the GPU
    prompt = torch.randint(0, config.vocab_size, (args.prompt,), generator=torch.Generator().manual_seed(1)).cuda()
    reference = None
    cases = []
    for mode in [None, *args.modes]:
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        model = copy.deepcopy(source)
        if mode is not None:
            model = quantize_linears(model, mode, torch.bfloat16)
        model = model.to("cuda").eval()
        model.reset_parameters()
        weights_gib = (torch.cuda.memory_allocated() - before) / 2**30
        with torch.no_grad():
            logits = model(prompt[None])[0].float()  # (prompt, vocab)
        ensure_kv_cache(model, 1, args.prompt + args.new)
        rates, _, tokens = generation_rates(model, decode_step, prompt, args.new, repeats=1)  # greedy, after a warm-up run
        case = dict(bench="quantized_check", model=args.model, mode=mode or "bf16", weights_gib=round(weights_gib, 2),
                    tokens_per_s=round(statistics.median(rates), 1), logits_finite=bool(torch.isfinite(logits).all()))
        if reference is None:
            reference = logits, tokens
        else:
            ref_logits, ref_tokens = reference
            cosine = torch.nn.functional.cosine_similarity(logits, ref_logits, dim=-1)
            case.update(
                logits_cosine_min=round(cosine.min().item(), 4), logits_cosine_mean=round(cosine.mean().item(), 4),
                top1_agree=round((logits.argmax(-1) == ref_logits.argmax(-1)).float().mean().item(), 3),
                greedy_equal_prefix=equal_prefix(tokens, ref_tokens),
            )
        emit(case)
        cases.append(case)
        del model
    table(cases, ["mode", "weights_gib", "logits_finite", "logits_cosine_min", "top1_agree", "greedy_equal_prefix", "tokens_per_s"])


if __name__ == "__main__":
    main()
