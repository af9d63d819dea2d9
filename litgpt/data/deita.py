"""`Deita`: 10k conversations selected for SFT (HuggingFaceH4/deita-10k-v0-sft), as instruction/answer pairs."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from litgpt.data.fetch import hf_dataset_if_missing
from litgpt.data.sft import SFTData, read_records


@dataclass
class Deita(SFTData):
    """Deita's chat records: the first user/assistant exchange of each, or every exchange with
    `include_multiturn_conversations` (the earlier turns then go in front of the instruction)."""

    include_multiturn_conversations: bool = False
    """Make one record of each exchange of a conversation, not only of the first"""
    download_dir: Path = Path("./data/deita")
    """The folder the train.json and val.json files are written to (and read from)"""
    repo_id: str = "HuggingFaceH4/deita-10k-v0-sft"
    """The Hugging Face data set to fetch"""

    def prepare_data(self) -> None:
        for split, name in (("train_sft", "train.json"), ("test_sft", "val.json")):
            hf_dataset_if_missing(self.repo_id, self.download_dir / name, split=split)

    def records(self) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
        train, val = (self.download_dir / name for name in ("train.json", "val.json"))
        multiturn = self.include_multiturn_conversations
        return conversation_records(read_records(train), multiturn, str(train)), conversation_records(read_records(val), multiturn, str(val))


def conversation_records(rows: List[Dict[str, Any]], multiturn: bool, source: str = "data") -> List[Dict[str, Any]]:
    """Instruction records from chat rows: `messages` as [{role, content}, ...] or `conversations` as strings
    alternating user and assistant; a turn that is not a string (or a dict with a string "content") is refused
    in one line naming `source` and the row."""
    records = []
    for index, row in enumerate(rows):
        turns = row.get("messages") or row.get("conversations") or []
        turns = turns if isinstance(turns, list) else [None]
        texts = [t.get("content") if isinstance(t, dict) else t for t in turns if not (isinstance(t, dict) and t.get("role") == "system")]
        if not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{source} record {index}: every turn of 'messages'/'conversations' must be a string "
                             "(or have a string 'content'); fix or remove the record")
        history = ""
        for i in range(0, len(texts) - 1, 2):
            records.append({"instruction": history + texts[i], "input": "", "output": texts[i + 1]})
            if not multiturn:
                break
            history += f"{texts[i]}\n\n{texts[i + 1]}\n\n"
    return records
