"""`LIMA`: 1,000 carefully curated conversations (the gated Hugging Face data set GAIR/lima)."""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from litgpt.data.deita import conversation_records
from litgpt.data.fetch import hf_dataset_if_missing
from litgpt.data.sft import SFTData, read_records


@dataclass
class LIMA(SFTData):
    """LIMA's conversations as instruction records (the first exchange of each, or all with multiturn)."""

    val_split_fraction: float = 0.1
    """The fraction of the records kept for validation"""
    include_multiturn_conversations: bool = False
    """Make one record of each exchange of a conversation, not only of the first"""
    repo_id: str = "GAIR/lima"
    """The Hugging Face data set to fetch (gated: accept its terms on the Hub first)"""
    access_token: Optional[str] = field(repr=False, default=os.getenv("HF_TOKEN"))
    """A Hugging Face token that may read the data set (default: $HF_TOKEN)"""
    download_dir: Path = Path("./data/lima")
    """The folder the records are written to (and read from)"""

    def prepare_data(self) -> None:
        path = self.download_dir / "train.json"
        if not path.is_file():
            if not self.access_token:
                raise ValueError("LIMA is gated: pass --data.access_token or set HF_TOKEN (or place data/lima/train.json)")
            hf_dataset_if_missing(self.repo_id, path, access_token=self.access_token)

    def records(self) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
        path = self.download_dir / "train.json"
        return conversation_records(read_records(path), self.include_multiturn_conversations, str(path)), None
