"""Converting checkpoints between Hugging Face's format and LitGPT's, and training checkpoints into inference ones.

`architectures` holds one table per Hugging Face model class; `hf_config` turns config.json into our Config and
back, `weights` renames and reshapes tensors, both driven by those tables; `hf_to_lit`, `lit_to_hf` and
`pretrained` are the three commands.
"""
