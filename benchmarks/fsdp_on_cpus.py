"""`litgpt` with the FSDP strategy its training commands take on several GPUs (`loop.fsdp_strategy`), run by CPU
processes over gloo instead, so that sharded training, its checkpoints and their resume run where no GPU is lent.

    python benchmarks/fsdp_on_cpus.py pretrain ... --devices 2       # `litgpt pretrain ... --devices 2`, under FSDP

Without GPUs the commands take DDP; here `loop.make_fabric` builds the GPUs' strategy instead, and three things that
stand between it and the CPUs are moved aside (none touches the model, the loop or the checkpoint format):
- Lightning refuses an `FSDPStrategy` without GPUs ("FSDP is only available on GPU"); it tests the exact type, so
  the strategy is given a subclass that adds nothing.
- torch's FullyShardedDataParallel (FSDP1) takes the device to run on from `device_id`, which Lightning leaves None
  on CPUs, and then asks for an accelerator ("FSDP needs a non-CPU accelerator device"): it is given the CPU.
- Whole-tensor state dicts are gathered with `offload_to_cpu=True`, which crashes the process (SIGSEGV, torch 2.13)
  when the tensors are on the CPU already: it is switched off, which changes only where the copies are made.

`install()` makes the changes in the calling process; a run's other processes are started by re-running the
command line (Lightning's launcher for FSDP), so a script that installs them before it trains has them in every
process. tests/train/test_fsdp.py and tests/finetune/test_finetune_ddp.py run through it.
"""

import sys
from pathlib import Path
from typing import Any, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def install() -> None:
    import lightning as L
    import torch
    from lightning.fabric.strategies import FSDPStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel

    from litgpt.train import loop

    class FSDPOnCPUs(FSDPStrategy):
        """`loop.fsdp_strategy`'s FSDPStrategy under a name that Lightning's GPU-only check passes over."""

    make_fabric = loop.make_fabric

    def make_fsdp_fabric(devices: int, num_nodes: int, precision: str, loggers: List[Any], block_class: type) -> Any:
        if devices * num_nodes == 1:
            return make_fabric(devices, num_nodes, precision, loggers, block_class)
        strategy = loop.fsdp_strategy(block_class, num_nodes)
        strategy.__class__ = FSDPOnCPUs
        return L.Fabric(accelerator="cpu", devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision, loggers=loggers)

    init = FullyShardedDataParallel.__init__

    def init_on_cpu(self: Any, module: Any, *args: Any, device_id: Any = None, **kwargs: Any) -> None:
        init(self, module, *args, device_id=torch.device("cpu") if device_id is None else device_id, **kwargs)

    set_state_dict_type = FullyShardedDataParallel.set_state_dict_type

    def set_state_dict_type_in_place(module: Any, state_dict_type: Any, state_dict_config: Any = None, optim_state_dict_config: Any = None) -> Any:
        for config in (state_dict_config, optim_state_dict_config):
            if getattr(config, "offload_to_cpu", False):
                config.offload_to_cpu = False
        return set_state_dict_type(module, state_dict_type, state_dict_config, optim_state_dict_config)

    loop.make_fabric = make_fsdp_fabric
    FullyShardedDataParallel.__init__ = init_on_cpu
    FullyShardedDataParallel.set_state_dict_type = staticmethod(set_state_dict_type_in_place)


if __name__ == "__main__":
    install()
    from litgpt.__main__ import main

    main(sys.argv[1:])
