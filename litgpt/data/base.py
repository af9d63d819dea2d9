"""The interface every data set offers the training loop; the loop calls the methods in this order.

    connect(tokenizer, batch_size, max_seq_length)   what the run needs from the data
    check()                                          cheap input checks, before any work
    prepare_data()                                   once, on rank 0 first (download, tokenize)
    setup()                                          on every process
    train_dataloader(), val_dataloader()

Subclasses are dataclasses whose fields are the `--data.*` flags; the module imports nothing heavy, so that
`litgpt pretrain --help` stays fast.
"""

import sys
from typing import Any, Dict, Optional

_LIGHTNING: Dict[type, type] = {}  # a data set class -> the same class made a LightningDataModule too


class DataModule:
    """Base class of the data sets; a plain class (not a dataclass) so that `--data` takes any subclass.

    What `connect` sets has class-level defaults here, so that subclasses need not declare it as fields.

    A data set made while Lightning's Trainer is loaded (`import lightning` came first) is also a
    `LightningDataModule`, so that `trainer.fit(model, data)` takes it, as LitGPT's are. Otherwise it is a plain
    object: importing Lightning here would cost `litgpt ... --help` seconds.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> "DataModule":
        trainer = sys.modules.get("lightning.pytorch")
        if trainer is None or issubclass(cls, trainer.LightningDataModule):
            return super().__new__(cls)
        if cls not in _LIGHTNING:
            # a local class (its __qualname__ says so): the CLI's `--data NAME` lookup passes it over
            _LIGHTNING[cls] = type(cls.__name__, (cls, trainer.LightningDataModule),
                                   {"__module__": cls.__module__, "__qualname__": f"DataModule.__new__.<locals>.{cls.__name__}",
                                    "__reduce__": _reduce, "_own_class": cls})
        data = super().__new__(_LIGHTNING[cls])
        trainer.LightningDataModule.__init__(data)  # the attributes the Trainer reads; the dataclass's __init__ follows
        return data

    tokenizer: Optional[Any] = None
    batch_size: int = 1
    max_seq_length: int = -1

    def connect(self, tokenizer: Optional[Any] = None, batch_size: int = 1, max_seq_length: Optional[int] = None) -> None:
        """Tell the data set the tokenizer, the micro-batch size and the longest sample the model takes."""
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_seq_length = -1 if max_seq_length is None else max_seq_length

    def check(self) -> None:
        """Raise FileNotFoundError/ValueError on bad settings; must be cheap: it runs before any work."""

    def prepare_data(self) -> None:
        """One-time preparation whose results later runs reuse (tokenizing, downloading)."""

    def setup(self, stage: str = "") -> None:
        """Per-process setup after `prepare_data`."""

    def train_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no training data")

    def val_dataloader(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no validation data")


def data_class(data: DataModule) -> type:
    """The class a data set was made as (the one `--data` names), not the Lightning-flavoured one `__new__` made."""
    return getattr(type(data), "_own_class", type(data))


def _reduce(data: DataModule) -> Any:
    """Pickle a Lightning-flavoured data set (`DataModule.__new__`) as its own class, which unpickling can import."""
    return _rebuild, (data_class(data), dict(data.__dict__))


def _rebuild(cls: type, state: Dict[str, Any]) -> DataModule:
    data = cls.__new__(cls)
    data.__dict__.update(state)
    return data
