"""Training: argument groups (`args`), the one Fabric loop (`loop`), reporting (`monitor`) and the commands
built on them (`pretrain`; finetuning methods plug into the same loop)."""
