"""Sequence packing: a packed batch computes, token for token, what its samples compute one by one."""

import pytest
import torch

from litgpt.config import Config
from litgpt.data import JSON
from litgpt.data.packing import PackedDataset, get_packed_collate_fn, pack
from litgpt.model import GPT
from litgpt.tokenizer import Tokenizer
from litgpt.train.loop import next_token_loss

IGNORE = -100


def tiny_model(sliding_window: bool) -> GPT:
    extra = dict(sliding_window_size=5, sliding_window_indices=[1, 0]) if sliding_window else {}
    config = Config(
        name="tiny", block_size=128, n_layer=2, n_embd=32, n_head=4, n_query_groups=2, vocab_size=400,
        padding_multiple=64, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", intermediate_size=64, bias=False,
        rotary_percentage=1.0, parallel_residual=False, **extra,
    )
    torch.manual_seed(0)
    return GPT(config)


def packed_rows(tiny_checkpoint, json_data, max_seq_length: int, mask_prompt: bool) -> PackedDataset:
    data = JSON(json_path=json_data, prompt_style="default", mask_prompt=mask_prompt, packing=True, num_workers=0)
    data.connect(tokenizer=Tokenizer(tiny_checkpoint), batch_size=2, max_seq_length=max_seq_length)
    data.check()
    data.setup()
    return PackedDataset(data.train_dataset, max_seq_length, IGNORE)


@pytest.mark.parametrize("sliding_window", [False, True], ids=["causal", "sliding-window"])
@pytest.mark.parametrize("mask_prompt", [False, True], ids=["full-loss", "mask-prompt"])
def test_packed_tokens_lose_and_learn_as_alone(tiny_checkpoint, json_data, sliding_window, mask_prompt):
    rows = packed_rows(tiny_checkpoint, json_data, 48, mask_prompt)
    assert len(rows) < len(rows.dataset)  # several samples share a row
    batch = get_packed_collate_fn(ignore_index=IGNORE)([rows[i] for i in range(len(rows))])
    model = tiny_model(sliding_window)

    inputs, labels, docs = batch["input_ids"][:, :-1], batch["labels"][:, 1:], batch["document_ids"][:, :-1]
    logits = model(inputs, document_ids=docs)
    packed = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    packed.sum().backward()
    packed_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    offset_of = {}
    for r, members in enumerate(rows.rows):
        offset = 0
        for i in members:
            offset_of[i] = (r, offset)
            offset += len(rows.dataset[i]["input_ids"])
    alone_total = 0
    for i, (r, o) in offset_of.items():
        sample = rows.dataset[i]
        n = len(sample["input_ids"])
        logits = model(sample["input_ids"][None, :-1])
        alone = torch.nn.functional.cross_entropy(logits[0], sample["labels"][1:], ignore_index=IGNORE, reduction="none")
        assert torch.equal(labels[r, o : o + n - 1], sample["labels"][1:])  # the loss mask, sample by sample
        torch.testing.assert_close(packed[r, o : o + n - 1], alone, atol=1e-5, rtol=0)
        alone_total = alone_total + alone.sum()
    alone_total.backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(packed_grads[name], param.grad, atol=1e-5, rtol=0, msg=name)


def test_training_loss_of_a_packed_batch_is_the_mean_over_its_samples(tiny_checkpoint, json_data):
    rows = packed_rows(tiny_checkpoint, json_data, 48, mask_prompt=True)
    batch = get_packed_collate_fn(ignore_index=IGNORE)([rows[i] for i in range(len(rows))])
    model = tiny_model(False)
    with torch.no_grad():
        loss = next_token_loss(model, batch, 47, IGNORE)
        total, count = 0.0, 0
        for i in range(len(rows.dataset)):
            sample = rows.dataset[i]
            logits = model(sample["input_ids"][None, :-1])[0]
            total += torch.nn.functional.cross_entropy(logits, sample["labels"][1:], ignore_index=IGNORE, reduction="sum")
            count += int((sample["labels"][1:] != IGNORE).sum())
    torch.testing.assert_close(loss, total / count, atol=1e-6, rtol=0)


def test_pack_fills_rows_best_fit_longest_first():
    assert pack([4, 2, 5, 3], 12) == [[2, 0, 3], [1]]
    rows = pack([7, 7, 7, 3, 3, 3], 10)
    assert sorted(sum(rows, [])) == list(range(6)) and len(rows) == 3


def test_packing_without_max_seq_length_is_one_line(tiny_checkpoint, json_data):
    data = JSON(json_path=json_data, packing=True, num_workers=0)
    data.connect(tokenizer=Tokenizer(tiny_checkpoint), batch_size=1, max_seq_length=None)
    with pytest.raises(ValueError, match=r"^--data.packing true needs --train.max_seq_length"):
        data.check()


def test_positions_restart_and_attention_stays_within_each_sample():
    from litgpt.model import document_masks

    docs = torch.tensor([[1, 1, 1, 2, 2, 3, 0, 0]])
    positions, (causal, window) = document_masks(docs, window=2)
    assert positions.tolist() == [[0, 1, 2, 0, 1, 0, 0, 1]]
    allowed = causal[0, 0]
    assert allowed[4].tolist() == [False, False, False, True, True, False, False, False]
    assert allowed[2].tolist() == [True, True, True, False, False, False, False, False]
    assert window[0, 0, 2].tolist() == [False, True, True, False, False, False, False, False]


def test_finetune_lora_trains_on_packed_rows(tiny_checkpoint, json_data, tmp_path):
    from finetune_helpers import losses

    from litgpt.train import finetune
    from litgpt.train.args import EvalArgs, TrainArgs

    finetune.finetune_lora(
        checkpoint_dir=tiny_checkpoint, out_dir=tmp_path / "out", precision="32-true",
        data=JSON(json_path=json_data, prompt_style="default", packing=True, num_workers=0),
        train=TrainArgs(global_batch_size=1, micro_batch_size=1, max_steps=4, lr_warmup_steps=1, save_interval=None,
                        log_interval=1, max_seq_length=48),
        eval=EvalArgs(interval=100, max_iters=1, max_new_tokens=2),
        optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.02}},
    )
    logged = losses(tmp_path / "out")
    assert len(logged) == 4 and all(0 < x < 10 for x in logged)
    assert (tmp_path / "out" / "final" / "lit_model.pth.lora").is_file()
