"""Config: registry lookup, model_config.yaml files as LitGPT writes them, and derived fields."""

import pytest
import yaml

from litgpt.config import Config


def test_derived_fields():
    config = Config(n_embd=64, n_head=4, vocab_size=100, padding_multiple=64, n_layer=3, sliding_window_size=8)
    assert config.head_size == 16
    assert config.padded_vocab_size == 128
    assert config.n_query_groups == 4
    assert config.intermediate_size == 256
    assert config.rope_n_elem == 4
    assert config.sliding_window_indices == [1, 1, 1]


def test_gated_mlp_needs_an_intermediate_size():
    with pytest.raises(ValueError, match="intermediate_size"):
        Config(mlp_class_name="LLaMAMLP")


def test_litgpt_model_config_yaml_round_trip(tmp_path):
    # a file as LitGPT writes it: only its own fields; norm flags come from the name
    config = Config(name="Gemma-2b-like", norm_class_name="RMSNorm", mlp_class_name="GemmaMLP", intermediate_size=64)
    config.save(tmp_path / "model_config.yaml")
    values = yaml.safe_load((tmp_path / "model_config.yaml").read_text())
    assert "norm_unit_offset" not in values and "norm_affine" not in values
    loaded = Config.from_checkpoint(tmp_path)
    assert loaded == config and loaded.norm_unit_offset is True

    # our own fields are written only where the name would imply something else
    renamed = Config(name="my-finetune", norm_class_name="RMSNorm", norm_unit_offset=True)
    renamed.save(tmp_path / "model_config.yaml")
    assert yaml.safe_load((tmp_path / "model_config.yaml").read_text())["norm_unit_offset"] is True
    assert Config.from_checkpoint(tmp_path).norm_unit_offset is True


def test_from_file_rejects_unknown_fields(tmp_path):
    (tmp_path / "model_config.yaml").write_text("n_layer: 2\nnot_a_field: 1\n")
    with pytest.raises(ValueError, match="not_a_field"):
        Config.from_file(tmp_path / "model_config.yaml")


def test_from_checkpoint_without_config_uses_the_folder_name(tmp_path):
    folder = tmp_path / "pythia-14m"
    folder.mkdir()
    assert Config.from_checkpoint(folder).n_embd == 128
    with pytest.raises(FileNotFoundError):
        Config.from_checkpoint(tmp_path)


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="'no-such-model' is not a supported config name"):  # LitGPT's phrase
        Config.from_name("no-such-model")
