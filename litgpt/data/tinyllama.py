"""`TinyLlama`: TinyLlama's pretraining mix of SlimPajama (text) and Starcoder (code), streamed with litdata.

    data_path/
        slimpajama/train/, slimpajama/val/   SlimPajama-627B tokenized by `litdata.optimize` (TokensLoader)
        starcoder/                           the Starcoder data, tokenized the same way

The corpora are hundreds of gigabytes, so they are prepared in advance (a local folder or a cloud URI
such as s3://...), not downloaded by the training run.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Tuple, Union

from litgpt.data.base import DataModule
from litgpt.data.chunks import TokenStream, check_num_workers, join, require_chunks, token_dataset, token_loader

# the share of each corpus in a training batch, as TinyLlama was trained: SlimPajama, Starcoder
WEIGHTS = (0.693584, 0.306416)


@dataclass
class TinyLlama(TokenStream, DataModule):
    """SlimPajama and Starcoder chunks mixed in TinyLlama's proportions; validation on SlimPajama's."""

    data_path: Union[str, Path] = Path("data/")
    """The folder or cloud URI holding slimpajama/train, slimpajama/val and starcoder (optimized chunks)"""
    seed: int = 42
    """The seed of the shuffling and of the mixing of the corpora"""
    num_workers: int = 8
    """Worker processes per data loader (0 loads in the training process)"""
    use_starcoder: bool = True
    """Mix in the Starcoder data (False: SlimPajama only)"""

    def __post_init__(self) -> None:
        self.slimpajama_train = join(self.data_path, "slimpajama", "train")
        self.slimpajama_val = join(self.data_path, "slimpajama", "val")
        self.starcoder_train = join(self.data_path, "starcoder")

    def chunk_dirs(self) -> Tuple[str, str]:
        return self.slimpajama_train, self.slimpajama_val

    def _required(self) -> List[str]:
        return [self.slimpajama_train, self.slimpajama_val] + ([self.starcoder_train] if self.use_starcoder else [])

    def check(self) -> None:
        check_num_workers(self.num_workers)
        layout = "slimpajama/train, slimpajama/val" + (", starcoder" if self.use_starcoder else "")
        for path in self._required():
            require_chunks(
                path, "--data.data_path", f"; {type(self).__name__} expects {layout} there, tokenized with litdata.optimize"
            )

    def train_dataloader(self) -> Any:
        if not self.use_starcoder:
            return super().train_dataloader()
        from litdata.streaming import CombinedStreamingDataset

        slimpajama = token_dataset(self.slimpajama_train, self.max_seq_length, shuffle=True, seed=self.seed)
        starcoder = token_dataset(self.starcoder_train, self.max_seq_length, shuffle=True, seed=self.seed)
        # iterate_over_all=False: sample by the weights until either corpus runs out, not until both do
        mix = CombinedStreamingDataset([slimpajama, starcoder], seed=self.seed, weights=WEIGHTS, iterate_over_all=False)
        return token_loader(mix, self.batch_size, self.num_workers, str(self.data_path))
