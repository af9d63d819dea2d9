"""`MicroLlama`: the TinyLlama data set without Starcoder, SlimPajama only."""

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from litgpt.data.tinyllama import TinyLlama


@dataclass(init=False)
class MicroLlama(TinyLlama):
    """SlimPajama chunks only (data_path/slimpajama/train and .../val), streamed with litdata."""

    def __init__(self, data_path: Union[str, Path] = Path("data/"), seed: int = 42, num_workers: int = 8) -> None:
        """
        Args:
            data_path: The folder or cloud URI holding slimpajama/train and slimpajama/val (optimized chunks)
            seed: The seed of the shuffling
            num_workers: Worker processes per data loader (0 loads in the training process)
        """
        super().__init__(data_path=data_path, seed=seed, num_workers=num_workers, use_starcoder=False)
