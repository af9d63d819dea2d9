"""`JSON`: instruction finetuning on your own records in a .json/.jsonl file, or a folder of train/val files."""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from litgpt.data.sft import SFTData, read_records, train_val_files


@dataclass
class JSON(SFTData):
    """Records {"instruction", "input" (optional), "output"} from `json_path`: one file, split into training and
    validation by `val_split_fraction`, or a folder holding train.json(l) and val.json(l)."""

    json_path: Path = Path("data.json")
    """A .json/.jsonl file, or a folder with train.json and val.json (or .jsonl)"""
    val_split_fraction: Optional[float] = None
    """The fraction of a single file's records kept for validation (unset: 0.05 for a file; leave unset for a folder)"""

    def check(self) -> None:
        if self.json_path.is_dir():
            if self.val_split_fraction is not None:
                raise ValueError("--data.val_split_fraction applies to a single file; the folder has its own val file")
            train_val_files(self.json_path)
        elif self.json_path.is_file():
            if self.val_split_fraction is None:  # as LitGPT: a default split, said in one line
                self.val_split_fraction = 0.05
                print(f"Warning: --data.json_path {str(self.json_path)!r} is one file and --data.val_split_fraction is unset: "
                      "5% of its records are kept for validation (set --data.val_split_fraction to change it)", file=sys.stderr)
        else:
            raise FileNotFoundError(f"--data.json_path: no file or folder at {str(self.json_path)!r}")
        super().check()

    def check_records(self) -> None:
        # a local file is cheap to read: bad JSON, bad records and too-long records fail here, before any work
        files = train_val_files(self.json_path) if self.json_path.is_dir() else (self.json_path,)
        for path in files:
            self.dataset(read_records(path)).check(str(path))

    def records(self) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
        if self.json_path.is_dir():
            train, val = train_val_files(self.json_path)
            return self.read(train), self.read(val)
        return self.read(self.json_path), None
