"""Sequence packing: tokenized instruction samples placed side by side in rows of `max_seq_length` tokens.

    samples   [a a a a] [b b] [c c c c c] [d d d]         (best fit, longest first)
    rows      [a a a a b b d d d . . .]  [c c c c c . . . . . . .]
    doc ids   [1 1 1 1 2 2 3 3 3 0 0 0]  [1 1 1 1 1 0 0 0 0 0 0 0]   0 = padding

Each row carries `document_ids`; the model (`GPT.forward(document_ids=...)`) keeps attention within a sample and
restarts the positions at each sample's first token, so a packed row computes what its samples would alone.
Labels keep each sample's own masking; a sample's first label is ignored, as it is when the sample is alone
(no token before it predicts it).
"""

from functools import partial
from typing import Any, Callable, Dict, List


class PackedDataset:
    """The samples of `dataset` ({"input_ids", "labels"} items) packed into rows of at most `max_seq_length` tokens."""

    def __init__(self, dataset: Any, max_seq_length: int, ignore_index: int = -100) -> None:
        if max_seq_length <= 0:
            raise ValueError("--data.packing true needs --train.max_seq_length: the length of the packed rows")
        self.dataset = dataset
        self.max_seq_length = max_seq_length
        self.ignore_index = ignore_index
        lengths = [min(len(dataset[i]["input_ids"]), max_seq_length) for i in range(len(dataset))]
        self.rows = pack(lengths, max_seq_length)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        import torch

        input_ids, labels, document_ids = [], [], []
        for doc, i in enumerate(self.rows[idx], 1):
            item = self.dataset[i]
            ids, lab = item["input_ids"][: self.max_seq_length], item["labels"][: self.max_seq_length].clone()
            lab[0] = self.ignore_index
            input_ids.append(ids)
            labels.append(lab)
            document_ids.append(torch.full_like(ids, doc))
        return {"input_ids": torch.cat(input_ids), "labels": torch.cat(labels), "document_ids": torch.cat(document_ids)}


def pack(lengths: List[int], capacity: int) -> List[List[int]]:
    """Sample indices grouped into rows of at most `capacity` tokens: best fit, longest samples first (each goes to
    the row with the least room that holds it); deterministic, ties keep the order of the data."""
    import bisect

    rows: List[List[int]] = []
    free: List[tuple] = []  # (room left, row index), sorted
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        k = bisect.bisect_left(free, (lengths[i], -1))
        if k < len(free):
            room, r = free.pop(k)
        else:
            room, r = capacity, len(rows)
            rows.append([])
        rows[r].append(i)
        bisect.insort(free, (room - lengths[i], r))
    return rows


def get_packed_collate_fn(pad_id: int = 0, ignore_index: int = -100) -> Callable:
    """Right-pads packed rows to the longest in the batch (document id 0, labels `ignore_index`)."""
    return partial(_collate, pad_id=pad_id, ignore_index=ignore_index)


def _collate(rows: List[Dict[str, Any]], pad_id: int, ignore_index: int) -> Dict[str, Any]:
    import torch

    longest = max(len(r["input_ids"]) for r in rows)
    batch = {}
    for key, pad in (("input_ids", pad_id), ("labels", ignore_index), ("document_ids", 0)):
        batch[key] = torch.stack([torch.cat((r[key], r[key].new_full((longest - len(r[key]),), pad))) for r in rows])
    return batch
