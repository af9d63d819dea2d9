"""`--data.inspect N`: the samples as trained, trained tokens marked exactly where labels are not ignore_index."""

import io
import os
import re
import subprocess
import sys

import pytest

from litgpt.data import JSON
from litgpt.data.inspect import inspect_data
from litgpt.tokenizer import Tokenizer
from test_finetune_sigkill import REPO_ROOT

IGNORE = -100


def connected(tiny_checkpoint, json_data, mask_prompt: bool, max_seq_length: int = -1) -> JSON:
    data = JSON(json_path=json_data, prompt_style="alpaca", mask_prompt=mask_prompt, num_workers=0)
    data.connect(tokenizer=Tokenizer(tiny_checkpoint), batch_size=1, max_seq_length=max_seq_length)
    data.check()
    return data


@pytest.mark.parametrize("mask_prompt", [True, False], ids=["mask-prompt", "full-loss"])
def test_marked_tokens_are_exactly_those_with_labels(tiny_checkpoint, json_data, mask_prompt):
    data = connected(tiny_checkpoint, json_data, mask_prompt)
    out = io.StringIO()
    inspect_data(data, 3, 10_000, out=out, color=False)
    shown = out.getvalue().split("── sample ")[1:4]
    assert len(shown) == 3
    for i, block in enumerate(shown):
        item = data.train_dataset[i]
        ids, labels = item["input_ids"].tolist(), item["labels"].tolist()
        targets = [t for t in range(1, len(ids)) if labels[t] != IGNORE]  # the tokens the loss sees (shifted)
        assert targets and (not mask_prompt or targets[0] > 1)
        # the marked runs, and the tokens of those runs, are the targets: same count and the same text
        header, text = block.split("\n", 1)
        assert f"(trained {len(targets)}, masked {len(ids) - len(targets)})" in header
        marked = "".join(re.findall(r"\[\[(.*?)\]\]", text, flags=re.S))
        runs, current = [], []
        for t in targets:
            if current and t != current[-1] + 1:
                runs.append(current)
                current = []
            current.append(t)
        runs.append(current)
        from litgpt.data.inspect import _text

        assert marked == "".join(_text(data.tokenizer, [ids[t] for t in run]) for run in runs)


def test_truncation_and_summary(tiny_checkpoint, json_data):
    whole = connected(tiny_checkpoint, json_data, mask_prompt=True)
    whole.setup()
    lengths = [sum(len(p) for p in whole.train_dataset.encode(i)) for i in range(len(whole.train_dataset))]
    limit = sorted(lengths)[len(lengths) // 2]
    data = connected(tiny_checkpoint, json_data, mask_prompt=True, max_seq_length=limit)
    out = io.StringIO()
    inspect_data(data, 6, limit, out=out, color=False)
    text = out.getvalue()
    cut = sum(n > limit for n in lengths)
    assert 0 < cut < len(lengths) and text.count("· truncated (") == cut
    assert f"truncated at {limit} tokens: {cut} (" in text
    assert f"max {max(lengths)}" in text and "would be dropped (no trained token within max_seq_length" in text


def test_cli_inspect_prints_brackets_when_piped_and_does_not_train(tiny_checkpoint, json_data, tmp_path):
    import yaml

    config = yaml.safe_load((tiny_checkpoint / "model_config.yaml").read_text())
    config["block_size"] = 256
    (tiny_checkpoint / "model_config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "litgpt", "finetune_lora", str(tiny_checkpoint), "--data", "JSON", "--data.json_path",
         str(json_data), "--data.mask_prompt", "true", "--data.inspect", "2", "--out_dir", str(tmp_path / "out")],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("── sample ") == 2 and "[[" in result.stdout and "\033[" not in result.stdout
    assert "── summary of 6 training samples" in result.stdout
    assert not (tmp_path / "out").exists()
