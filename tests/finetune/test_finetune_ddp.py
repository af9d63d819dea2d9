"""Finetuning on two CPU processes (DDP over gloo, started by Fabric) trains like one process."""

from finetune_helpers import losses, run, weights


def test_lora_on_two_cpu_processes_matches_one(tiny_checkpoint, json_data, tmp_path):
    base_dir = tiny_checkpoint
    settings = dict(lora_r=4, lora_alpha=8, train=dict(max_steps=8))
    run("finetune_lora", base_dir, json_data, tmp_path / "one", **settings)
    run("finetune_lora", base_dir, json_data, tmp_path / "two", devices=2, **settings)

    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(two) == len(one)  # one logged loss per optimizer step
    # the same global batch of the same six records, split over two processes instead of accumulated
    assert sum(two[-2:]) / 2 < sum(two[:2]) / 2
    assert abs(sum(two) / len(two) - sum(one) / len(one)) < 0.25 * sum(one) / len(one)
    final = weights(tmp_path / "two" / "final" / "lit_model.pth.lora")
    assert final.keys() == weights(tmp_path / "one" / "final" / "lit_model.pth.lora").keys()
