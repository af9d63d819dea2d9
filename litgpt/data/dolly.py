"""`Dolly`: Databricks' 15k human-written instruction records (instruction, context, response)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

from litgpt.data.alpaca import Alpaca


@dataclass
class Dolly(Alpaca):
    """databricks-dolly-15k, with `context` as the input and `response` as the output."""

    # Alpaca's fields with Dolly's defaults (the --help texts come from Alpaca's)
    val_split_fraction: float = 0.1
    download_dir: Path = Path("./data/dolly")
    file_url: str = "https://huggingface.co/datasets/databricks/databricks-dolly-15k/resolve/main/databricks-dolly-15k.jsonl"
    file_name: str = "dolly_data_cleaned.json"

    def transform(self, example: Dict[str, Any]) -> Dict[str, Any]:
        if "response" not in example:
            return example
        return {"instruction": example["instruction"], "input": example.get("context", ""), "output": example["response"]}
