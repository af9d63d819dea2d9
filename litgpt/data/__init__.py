"""Data sets for training. Each is a `DataModule` subclass; `--data NAME` picks one by class name."""

from litgpt.data.base import DataModule
from litgpt.data.text_files import TextFiles

__all__ = ["DataModule", "TextFiles"]
from litgpt.data.sft import SFTData, SFTDataset, get_sft_collate_fn
from litgpt.data.json_data import JSON
from litgpt.data.alpaca import Alpaca, Alpaca2k, AlpacaGPT4
from litgpt.data.dolly import Dolly
from litgpt.data.deita import Deita
from litgpt.data.flan import FLAN
from litgpt.data.lima import LIMA
from litgpt.data.longform import LongForm
from litgpt.data.preference import Preference

__all__ += ["SFTData", "SFTDataset", "get_sft_collate_fn", "JSON", "Alpaca", "Alpaca2k", "AlpacaGPT4", "Dolly", "Deita", "FLAN", "LIMA", "LongForm", "Preference"]
from litgpt.data.lit_data import LitData
from litgpt.data.tinystories import TinyStories
from litgpt.data.openwebtext import OpenWebText
from litgpt.data.tinyllama import TinyLlama
from litgpt.data.microllama import MicroLlama

__all__ += ["LitData", "TinyStories", "OpenWebText", "TinyLlama", "MicroLlama"]
