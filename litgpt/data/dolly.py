"""`Dolly`: Databricks' 15k human-written instruction records (instruction, context, response)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

from litgpt.data.alpaca import Alpaca


@dataclass
class Dolly(Alpaca):
    """databricks-dolly-15k, with `context` as the input and `response` as the output."""

    val_split_fraction: float = 0.1
    """The fraction of the records kept for validation"""
    download_dir: Path = Path("./data/dolly")
    """The folder the data file is downloaded to (and read from)"""
    file_url: str = "https://huggingface.co/datasets/databricks/databricks-dolly-15k/resolve/main/databricks-dolly-15k.jsonl"
    """Where the data file comes from"""
    file_name: str = "dolly_data_cleaned.json"
    """The data file's name in download_dir"""

    def transform(self, example: Dict[str, Any]) -> Dict[str, Any]:
        if "response" not in example:
            return example
        return {"instruction": example["instruction"], "input": example.get("context", ""), "output": example["response"]}
