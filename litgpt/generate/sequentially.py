"""`litgpt generate_sequentially`: generate with a model too large for one GPU, its blocks spread over several
(`litgpt.engine.sequential`)."""

from types import SimpleNamespace

from litgpt.engine.sequential import load_sequentially
from litgpt.generate.flags import MULTI_DEVICE, command


@command(
    MULTI_DEVICE,
    accelerator="cuda, cpu, or auto (cuda when there is a GPU). On the CPU the pieces all run on the CPU, which checks "
    "a setup without GPUs.",
    devices="How many devices to spread the blocks over (at most the number of layers); auto is every visible GPU.",
)
def generate_sequentially(args: SimpleNamespace) -> None:
    """Complete a prompt with a model too large for one GPU: consecutive blocks go to consecutive GPUs.

    The GPUs take turns (one works while the others wait), so this is for models that do not fit one GPU;
    `litgpt generate_tp` makes them work at once.
    """
    from litgpt.api import LLM
    from litgpt.engine.core import fast_decode_step
    from litgpt.engine.devices import pick_devices
    from litgpt.generate.cli import check_flags, print_completions, print_memory

    check_flags(args)
    chosen = pick_devices(args.accelerator, args.devices)
    llm = LLM.load(str(args.checkpoint_dir), distribute=None)  # the tokenizer and prompt style; the model comes next
    llm.model = load_sequentially(llm.checkpoint_dir, chosen, precision=args.precision, quantize=args.quantize)
    llm.quantize = args.quantize
    llm.decode_step = fast_decode_step(args.compile)  # the plain (or compiled) step for a model over several devices
    print_completions(llm, args)
    print_memory(chosen)
