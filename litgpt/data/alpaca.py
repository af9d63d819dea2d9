"""The Alpaca instruction sets: `Alpaca` (52k, cleaned), `Alpaca2k` (a 2k sample) and `AlpacaGPT4` (GPT-4 answers).

Each fetches its public file into `download_dir` once; a file already there is used as it is (offline use).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from litgpt.data.sft import SFTData, download_if_missing, read_records


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

    def __post_init__(self) -> None:
        super().__post_init__()
        self.download_dir = Path(self.download_dir)

    def prepare_data(self) -> None:
        download_if_missing(self.download_dir / self.file_name, self.file_url)

    def records(self) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
        return self.read(self.download_dir / self.file_name), None


@dataclass
class Alpaca2k(Alpaca):
    """A 2,000-record sample of Alpaca (the Hugging Face data set `mhenrichsen/alpaca_2k_test`)."""

    val_split_fraction: float = 0.05
    """The fraction of the records kept for validation"""
    download_dir: Path = Path("./data/alpaca2k")
    """The folder the data file is written to (and read from)"""
    repo_id: str = "mhenrichsen/alpaca_2k_test"
    """The Hugging Face data set to fetch"""
    file_name: str = "alpaca2k_data_cleaned_archive.json"
    """The data file's name in download_dir"""
    file_url: str = ""
    """Unused: the records come from `repo_id`"""

    def prepare_data(self) -> None:
        path = self.download_dir / self.file_name
        if not path.is_file():
            write_hf_dataset(self.repo_id, path)


@dataclass
class AlpacaGPT4(Alpaca):
    """The Alpaca instructions with answers written by GPT-4."""

    val_split_fraction: float = 0.03847
    """The fraction of the records kept for validation"""
    download_dir: Path = Path("./data/alpacagpt4")
    """The folder the data file is downloaded to (and read from)"""
    file_url: str = "https://raw.githubusercontent.com/Instruction-Tuning-with-GPT-4/GPT-4-LLM/main/data/alpaca_gpt4_data.json"
    """Where the data file comes from"""
    file_name: str = "alpacagpt4_data_cleaned_archive.json"
    """The data file's name in download_dir"""


def write_hf_dataset(repo_id: str, path: Path, split: str = "train", access_token: Optional[str] = None) -> None:
    """Fetch a Hugging Face data set's parquet/json files of `split` and write its records to `path` (.json)."""
    import json

    from huggingface_hub import HfApi, hf_hub_download

    try:
        files = HfApi(token=access_token).list_repo_files(repo_id, repo_type="dataset")
    except Exception as e:  # network and permission errors come in many types
        raise ConnectionError(f"Could not list the data set {repo_id}: {e}; place {path} there yourself to work offline") from None
    data_files = [f for f in files if f.endswith((".parquet", ".jsonl", ".json")) and not Path(f).name.startswith(".")]
    wanted = [f for f in data_files if Path(f).name.startswith(split) or f"/{split}/" in f"/{f}"]
    if not wanted:
        raise ValueError(f"The data set {repo_id} has no parquet/json files for split {split!r}")
    records: List[Dict[str, Any]] = []
    for name in sorted(wanted):
        local = Path(hf_hub_download(repo_id, name, repo_type="dataset", token=access_token))
        if local.suffix == ".parquet":
            import pyarrow.parquet as pq

            records.extend(pq.read_table(local).to_pylist())
        else:
            records.extend(read_records(local))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, default=str), encoding="utf-8")
