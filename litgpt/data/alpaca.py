"""The Alpaca instruction sets: `Alpaca` (52k, cleaned), `Alpaca2k` (a 2k sample) and `AlpacaGPT4` (GPT-4 answers).

Each fetches its public file into `download_dir` once; a file already there is used as it is (offline use).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from litgpt.data.fetch import download_if_missing, hf_dataset_if_missing
from litgpt.data.sft import SFTData


@dataclass
class Alpaca(SFTData):
    """The cleaned Alpaca data set (instruction, input, output)."""

    val_split_fraction: float = 0.03865
    """The fraction of the records kept for validation"""
    download_dir: Path = Path("./data/alpaca")
    """The folder the data file is downloaded to (and read from)"""
    file_url: str = "https://raw.githubusercontent.com/tloen/alpaca-lora/main/alpaca_data_cleaned_archive.json"
    """Where the data file comes from"""
    file_name: str = "alpaca_data_cleaned_archive.json"
    """The data file's name in download_dir"""

    def prepare_data(self) -> None:
        download_if_missing(self.download_dir / self.file_name, self.file_url)

    def records(self) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
        return self.read(self.download_dir / self.file_name), None


@dataclass
class Alpaca2k(Alpaca):
    """A 2,000-record sample of Alpaca (the Hugging Face data set `mhenrichsen/alpaca_2k_test`)."""

    val_split_fraction: float = 0.05
    download_dir: Path = Path("./data/alpaca2k")
    """The folder the data file is written to (and read from)"""
    repo_id: str = "mhenrichsen/alpaca_2k_test"
    """The Hugging Face data set to fetch"""
    file_name: str = "alpaca2k_data_cleaned_archive.json"
    file_url: str = ""
    """Unused: the records come from `repo_id`"""

    def prepare_data(self) -> None:
        hf_dataset_if_missing(self.repo_id, self.download_dir / self.file_name)


@dataclass
class AlpacaGPT4(Alpaca):
    """The Alpaca instructions with answers written by GPT-4."""

    # Alpaca's fields with other defaults (the --help texts come from Alpaca's)
    val_split_fraction: float = 0.03847
    download_dir: Path = Path("./data/alpacagpt4")
    file_url: str = "https://raw.githubusercontent.com/Instruction-Tuning-with-GPT-4/GPT-4-LLM/main/data/alpaca_gpt4_data.json"
    file_name: str = "alpacagpt4_data_cleaned_archive.json"
