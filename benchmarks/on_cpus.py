"""`litgpt` with two GPU-only training paths run by CPU processes, so that they run where no GPU is lent, in every
test run among them: the FSDP strategy the training commands take on several GPUs, and `--fp8` in torchao's
emulation of float8 matmuls.

    python benchmarks/on_cpus.py --fsdp pretrain ... --devices 2          # `litgpt pretrain ... --devices 2` under FSDP
    python benchmarks/on_cpus.py --emulate_fp8 pretrain ... --fp8 rowwise         # float8 training, emulated
    python benchmarks/on_cpus.py --fsdp --emulate_fp8 finetune_full ... --devices 2 --fp8 rowwise

Neither touches the model, the loop or the checkpoint format; each moves aside what stands between the path and
the CPUs.

`--fsdp` (`install_fsdp`): `loop.make_fabric` builds the GPUs' strategy (`loop.fsdp_strategy`) for CPU processes
over gloo. Three things refuse it there:
- Lightning refuses an `FSDPStrategy` without GPUs ("FSDP is only available on GPU"); it tests the exact type, so
  the strategy is given a subclass that adds nothing.
- torch's FullyShardedDataParallel (FSDP1) takes the device to run on from `device_id`, which Lightning leaves None
  on CPUs, and then asks for an accelerator ("FSDP needs a non-CPU accelerator device"): it is given the CPU.
- Whole-tensor state dicts are gathered with `offload_to_cpu=True`, which crashes the process (SIGSEGV, torch 2.13)
  when the tensors are on the CPU already: it is switched off, which changes only where the copies are made.

`--emulate_fp8` (`install_fp8_emulation`): `loop.fp8_gpu_problem` finds none, and `loop.to_float8` converts the same layers
with torchao's `emulate=True`: each operand is scaled and cast to float8 as on a GPU, and the product of the float8
values is taken in fp32 (a GPU's float8 matmul accumulates in fp32 too). Under the CPU's bf16 autocast the layer
takes its input in bf16 and returns bf16, as torchao's layer does under CUDA's autocast (it reads only CUDA's). The
numbers are a GPU's up to the order of sums; the speed is not (emulation is slower than bf16).

A run's other processes are started by re-running the command line (Lightning's launcher for FSDP), so every
process makes the same changes.
"""

import functools
import sys
from pathlib import Path
from typing import Any, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

USAGE = "usage: python benchmarks/on_cpus.py [--fsdp] [--emulate_fp8] COMMAND [litgpt's flags of COMMAND]"


def install_fsdp() -> None:
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


def install_fp8_emulation() -> None:
    from litgpt.train import loop

    to_float8 = loop.to_float8

    def to_float8_emulated(model: Any, recipe: str) -> int:
        emulate_float8()  # torchao is imported here, on the --fp8 path only, as the command does
        return to_float8(model, recipe)

    loop.fp8_gpu_problem = lambda: None
    loop.to_float8 = to_float8_emulated


@functools.cache  # once a process: it wraps torchao's functions
def emulate_float8() -> None:
    import dataclasses

    import torch
    from torchao.float8 import Float8LinearConfig
    from torchao.float8.float8_linear import Float8Linear

    recipe_config = Float8LinearConfig.from_recipe_name  # bound to the class
    Float8LinearConfig.from_recipe_name = staticmethod(lambda name: dataclasses.replace(recipe_config(name), emulate=True))
    forward = Float8Linear.forward

    def forward_as_under_cuda_autocast(self: Any, input: Any) -> Any:
        if input.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
            with torch.autocast("cpu", enabled=False):  # the emulated product in fp32, not autocast's bf16
                return forward(self, input.to(dtype))
        return forward(self, input)

    Float8Linear.forward = forward_as_under_cuda_autocast


def main(argv: List[str]) -> None:
    switches = {"--fsdp": install_fsdp, "--emulate_fp8": install_fp8_emulation}
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE + "\n\n" + __doc__)
        return
    while argv and argv[0] in switches:
        switches[argv.pop(0)]()
    if not argv or argv[0].startswith("-"):
        sys.exit(USAGE)
    from litgpt.__main__ import main as litgpt

    litgpt(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
