"""Data sets for training. Each is a `DataModule` subclass; `--data NAME` picks one by class name."""

from litgpt.data.base import DataModule
from litgpt.data.text_files import TextFiles

__all__ = ["DataModule", "TextFiles"]
