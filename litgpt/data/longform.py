"""`LongForm`: long answers to instructions generated from corpus documents (its own train/val files)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from litgpt.data.fetch import download_if_missing
from litgpt.data.sft import SFTData
from litgpt.prompts import PromptStyle


@dataclass
class LongForm(SFTData):
    """The LongForm data set; its records' `input` is the instruction."""

    prompt_style: Union[str, PromptStyle] = "longform"
    """The prompt style that wraps each instruction"""
    download_dir: Path = Path("./data/longform")
    """The folder the train.json and val.json files are downloaded to (and read from)"""
    file_url: str = "https://raw.githubusercontent.com/akoksal/LongForm/main/dataset"
    """The folder URL that holds train.json and val.json"""

    def prepare_data(self) -> None:
        for name in ("train.json", "val.json"):
            download_if_missing(self.download_dir / name, f"{self.file_url}/{name}")

    def records(self) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
        return self.read(self.download_dir / "train.json"), self.read(self.download_dir / "val.json")

    def transform(self, example: Dict[str, Any]) -> Dict[str, Any]:
        if "instruction" in example:
            return example
        return {"instruction": example["input"], "output": example["output"]}
