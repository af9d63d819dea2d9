"""`FLAN`: the FLAN collection of tasks (Muennighoff/flan), one pair of train/test JSON Lines files per subset."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from litgpt.data.fetch import download_if_missing
from litgpt.data.sft import SFTData
from litgpt.prompts import PromptStyle


@dataclass
class FLAN(SFTData):
    """FLAN subsets, given by name (comma-separated), e.g. `--data.subsets aeslc_10templates,wmt16_translate_deen_10templates`."""

    prompt_style: Union[str, PromptStyle] = "flan"
    """The prompt style that wraps each instruction"""
    download_dir: Path = Path("./data/flan")
    """The folder the subset files are downloaded to (and read from)"""
    url: str = "https://huggingface.co/datasets/Muennighoff/flan/resolve/main"
    """The URL of the folder that holds <subset>_train.jsonl and <subset>_test.jsonl"""
    subsets: Optional[str] = None
    """Comma-separated subset names"""

    def _subsets(self) -> List[str]:
        names = [s.strip() for s in (self.subsets or "").split(",") if s.strip()]
        if not names:
            raise ValueError("FLAN needs --data.subsets: comma-separated subset names of Muennighoff/flan")
        return names

    def check(self) -> None:
        super().check()
        self._subsets()

    def prepare_data(self) -> None:
        for subset in self._subsets():
            for split in ("train", "test"):
                name = f"{subset}_{split}.jsonl"
                download_if_missing(self.download_dir / name, f"{self.url}/{split}/{name}")

    def records(self) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
        train, val = [], []
        for subset in self._subsets():
            train += self.read(self.download_dir / f"{subset}_train.jsonl")
            val += self.read(self.download_dir / f"{subset}_test.jsonl")
        return train, val

    def transform(self, example: Dict[str, Any]) -> Dict[str, Any]:
        if "instruction" in example:
            return example
        return {"instruction": example["inputs"], "output": example["targets"]}
