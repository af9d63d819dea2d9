"""`litgpt evaluate`: our lm-eval backend scores a tiny model exactly as lm-eval's HF backend scores it converted."""

import json
import shutil

import pytest
from generate.tiny import checkpoint, one_thread  # noqa: F401 (an autouse fixture)

from litgpt.evaluate import evaluate

MULTIPLE_CHOICE = [
    {"question": "The quick brown fox", "choices": ["jumps over", "eats grass", "is lazy"], "answer": 0},
    {"question": "Llamas eat", "choices": ["grass", "fish", "stones and leaves"], "answer": 0},
    {"question": "Hello there, how are", "choices": ["you", "they", "we today"], "answer": 0},
    {"question": "What food do llamas", "choices": ["eat?", "like?"], "answer": 0},
]
GENERATION = [
    {"question": "The quick brown fox jumps over", "answer": "the lazy dog"},
    {"question": "Hello there,", "answer": "how are you today?"},
    {"question": "Tokens stream one at a time;", "answer": "the reply"},
]
PERPLEXITY = [{"text": "The quick brown fox jumps over the lazy dog."}, {"text": "Llamas eat grass, hay and leaves. " * 3}]


def write_tasks(folder, cache_dir):
    """Three lm-eval tasks over local JSON-lines files: multiple choice, generation, rolling log-likelihood."""
    folder.mkdir()
    for name, rows in (("mc", MULTIPLE_CHOICE), ("gen", GENERATION), ("ppl", PERPLEXITY)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))

    def dataset(name):
        return (
            "dataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {folder / name}.jsonl\n  cache_dir: {cache_dir}\n"
            "test_split: test\n"
        )

    (folder / "mc.yaml").write_text(
        "task: tiny_mc\n" + dataset("mc") + "output_type: multiple_choice\n"
        "doc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: '{{answer}}'\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    )
    (folder / "gen.yaml").write_text(
        "task: tiny_gen\n" + dataset("gen") + "output_type: generate_until\n"
        "doc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n"
        "generation_kwargs:\n  until: ['.', '?']\n  max_gen_toks: 12\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n"
    )
    (folder / "ppl.yaml").write_text(
        "task: tiny_ppl\n" + dataset("ppl") + "output_type: loglikelihood_rolling\n"
        "doc_to_text: ''\ndoc_to_target: '{{text}}'\n"
        "metric_list:\n  - metric: word_perplexity\n  - metric: bits_per_byte\n"
    )
    return folder


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """The tiny llama, its tokenizer.json prepending BOS as Llama's does, so that HF's tokenizer adds it too."""
    from tokenizers import Tokenizer, processors

    folder = tmp_path_factory.mktemp("eval") / "tiny-llama"
    shutil.copytree(checkpoint(tmp_path_factory, "tiny-random-llama", "llama"), folder)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def run(llama_dir, tmp_path, backend):
    out_dir = tmp_path / backend
    tasks = write_tasks(tmp_path / f"tasks-{backend}", tmp_path / "datasets")
    evaluate(llama_dir, tasks="tiny_mc,tiny_gen,tiny_ppl", out_dir=out_dir, include_path=tasks, batch_size=2, backend=backend, device="cpu")
    return json.loads((out_dir / "results.json").read_text())


def responses(results, task):
    """Every model answer of a task, in document order: (log-prob, is-greedy) pairs, texts or log-likelihoods."""
    samples = sorted(results["samples"][task], key=lambda sample: sample["doc_id"])
    return [answer for sample in samples for (answer,) in sample["resps"]]


def test_litgpt_backend_matches_hf_backend(llama_dir, tmp_path, capsys):
    ours = run(llama_dir, tmp_path, "litgpt")
    assert "tiny_mc" in capsys.readouterr().out  # the table
    theirs = run(llama_dir, tmp_path, "hf")
    assert (tmp_path / "hf" / "hf" / "config.json").is_file()  # the converted model

    for metric in ("acc,none", "acc_norm,none"):
        assert ours["results"]["tiny_mc"][metric] == theirs["results"]["tiny_mc"][metric]
    for (logprob, greedy), (hf_logprob, hf_greedy) in zip(responses(ours, "tiny_mc"), responses(theirs, "tiny_mc"), strict=True):
        assert logprob == pytest.approx(hf_logprob, abs=1e-3) and greedy == hf_greedy

    assert responses(ours, "tiny_gen") == responses(theirs, "tiny_gen")
    assert all(responses(ours, "tiny_gen"))  # text was generated
    assert ours["results"]["tiny_gen"]["exact_match,none"] == theirs["results"]["tiny_gen"]["exact_match,none"]

    assert responses(ours, "tiny_ppl") == pytest.approx(responses(theirs, "tiny_ppl"), rel=1e-5)
    for metric in ("word_perplexity,none", "bits_per_byte,none"):
        assert ours["results"]["tiny_ppl"][metric] == pytest.approx(theirs["results"]["tiny_ppl"][metric], rel=1e-4)


def test_unknown_task_is_one_clear_error(llama_dir, tmp_path):
    tasks = write_tasks(tmp_path / "tasks", tmp_path / "datasets")
    with pytest.raises(ValueError, match=r"Unknown lm-eval task 'no_such_task'; list the valid names with `litgpt evaluate list`"):
        evaluate(llama_dir, tasks="tiny_mc,no_such_task", include_path=tasks)


def test_bad_arguments(llama_dir, tmp_path):
    with pytest.raises(ValueError, match="batch_size must be"):
        evaluate(llama_dir, tasks="tiny_mc", batch_size=0)
    with pytest.raises(FileNotFoundError, match="include_path"):
        evaluate(llama_dir, tasks="tiny_mc", include_path=tmp_path / "missing")


class Request:
    def __init__(self, *args):
        self.args = args


def test_generation_stops_at_until_strings(llama_dir):
    from litgpt.api import LLM
    from litgpt.lm_eval_model import LitGPTLM

    lm = LitGPTLM(LLM.load(llama_dir, accelerator="cpu"), batch_size=2)
    contexts = ["The quick brown fox", "Hello there, how are you", "Llamas"]
    free = lm.generate_until([Request(c, {"until": [], "max_gen_toks": 16, "do_sample": False}) for c in contexts])
    assert all(free)
    # stop each row at a piece of its own unconstrained text: the result is the text before that piece
    stops = [text[3:5] for text in free]
    cut = lm.generate_until([Request(c, {"until": [stop], "max_gen_toks": 16}) for c, stop in zip(contexts, stops)])
    assert cut == [text[: text.index(stop)] for text, stop in zip(free, stops)]
