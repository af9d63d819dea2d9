"""litgpt/checkpoint.py: lazy HF reading, streamed and atomic .pth writing, state-dict unwrapping, dtype names."""

import json

import pytest
import torch

from litgpt.checkpoint import (
    CheckpointError,
    copy_tokenizer_files,
    count_hf_tensors,
    hf_weight_files,
    incremental_save,
    iter_hf_weights,
    load_state_dict,
    model_state_dict,
    parse_dtype,
    save_state_dict_atomic,
)


def test_incremental_save_reads_back_like_torch_save(tmp_path):
    base = torch.randn(10)
    tensors = {"matrix": torch.randn(4, 3), "view": base[2:6], "transposed": torch.randn(3, 2).t(), "half": torch.randn(5).bfloat16()}
    with incremental_save(tmp_path / "w.pth") as saver:
        for name, tensor in tensors.items():
            saver[name] = tensor
        saver["tied"] = saver.state_dict["matrix"]  # stored once, referenced twice
    loaded = load_state_dict(tmp_path / "w.pth")
    assert list(loaded) == [*tensors, "tied"]
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)
    assert loaded["tied"].data_ptr() == loaded["matrix"].data_ptr()
    assert (tmp_path / "w.pth").stat().st_size < 4 * (12 + 4 + 6) + 2 * 5 + 4096  # the view's base was not stored
    assert torch.load(tmp_path / "w.pth", weights_only=True).keys() == loaded.keys()  # without mmap too


def test_writes_are_atomic(tmp_path):
    target = tmp_path / "lit_model.pth"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with incremental_save(target) as saver:
            saver["a"] = torch.ones(3)
            raise RuntimeError("interrupted")
    with pytest.raises(Exception):
        save_state_dict_atomic({"a": lambda: None}, target)  # not picklable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lit_model.pth"]
    assert target.read_bytes() == b"old"
    save_state_dict_atomic({"a": torch.ones(2)}, target)
    assert torch.equal(load_state_dict(target)["a"], torch.ones(2))


def test_sharded_safetensors_are_read_one_tensor_at_a_time(tmp_path):
    from safetensors.torch import save_file

    tensors = {f"t{i}": torch.full((2, 2), float(i)) for i in range(5)}
    save_file({k: tensors[k] for k in ("t0", "t1")}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({k: tensors[k] for k in ("t2", "t3", "t4")}, tmp_path / "model-00002-of-00002.safetensors")
    weight_map = {k: f"model-0000{1 if k in ('t0', 't1') else 2}-of-00002.safetensors" for k in tensors}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    files = hf_weight_files(tmp_path)
    assert [f.name for f in files] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert count_hf_tensors(files) == 5
    stream = iter_hf_weights(files)
    name, tensor = next(stream)  # a generator: nothing beyond this tensor has been read
    assert name == "t0" and torch.equal(tensor, tensors["t0"])
    assert dict(stream).keys() == {"t1", "t2", "t3", "t4"}


def test_bin_files_are_memory_mapped(tmp_path):
    torch.save({"w": torch.randn(3, 3)}, tmp_path / "pytorch_model.bin")
    files = hf_weight_files(tmp_path)
    assert count_hf_tensors(files) is None
    ((name, tensor),) = list(iter_hf_weights(files))
    assert name == "w" and tensor.shape == (3, 3)


def test_model_state_dict_unwraps_training_checkpoints():
    w = torch.ones(1)
    assert model_state_dict({"model": {"_forward_module._orig_mod.lm_head.weight": w}, "iter_num": 3}) == {"lm_head.weight": w}
    assert model_state_dict({"module.lm_head.weight": w}) == {"lm_head.weight": w}
    with pytest.raises(CheckpointError):
        model_state_dict([w])


@pytest.mark.parametrize("name, dtype", [("bf16", torch.bfloat16), ("bfloat16", torch.bfloat16), ("fp16", torch.float16),
                                         ("float16", torch.float16), ("fp32", torch.float32), ("32-true", torch.float32), (None, None)])
def test_parse_dtype(name, dtype):
    assert parse_dtype(name) == dtype


def test_copy_tokenizer_files(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("tokenizer.json", "generation_config.json", "other.txt"):
        (tmp_path / "a" / name).write_text(name)
    assert copy_tokenizer_files(tmp_path / "a", tmp_path / "b") == ["tokenizer.json", "generation_config.json"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["generation_config.json", "tokenizer.json"]
    assert copy_tokenizer_files(tmp_path / "a", tmp_path / "a") == []
