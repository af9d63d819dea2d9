"""Reading and writing checkpoint folders: lazy loads of Hugging Face and LitGPT weights, atomic writes.

Every reader here touches one tensor (or one shard) at a time, and every writer goes through a
temporary file that replaces the target only once complete, so a failure never leaves a partial
`lit_model.pth` behind. torch and safetensors are imported inside the functions that need them.
"""

import json
import os
import pickle
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

# the files a tokenizer loads from (either will do)
TOKENIZER_MODEL_FILES = ("tokenizer.json", "tokenizer.model")
# Hugging Face's description of the model and its generation defaults
HF_CONFIG_FILES = ("generation_config.json", "config.json")
# the files besides the weights that describe a model's tokenizer, config and generation defaults: what a download
# fetches and what travels with the weights
TOKENIZER_FILES = TOKENIZER_MODEL_FILES + ("tokenizer_config.json", "special_tokens_map.json") + HF_CONFIG_FILES
# prefixes that training wrappers put in front of the model's keys (Fabric, torch.compile, DDP)
WRAPPER_PREFIXES = ("_forward_module.", "_orig_mod.", "module.")


class CheckpointError(Exception):
    """A checkpoint folder cannot be read or written; the message is one line meant for the user."""


# Lightning's precision names (and its short forms: "bf16" and "16" mean the mixed ones) -> the weights' dtype
PRECISIONS = {"bf16-true": "bfloat16", "bf16-mixed": "bfloat16", "bf16": "bfloat16", "16-true": "float16", "16-mixed": "float16",
              "16": "float16", "32-true": "float32", "32": "float32", "64-true": "float64", "64": "float64"}
MIXED_PRECISIONS = ("bf16-mixed", "16-mixed", "bf16", "16")  # the weights stay float32; the products run in 16 bits


# ---------------------------------------------------------------------------------------------------------------
# LitGPT checkpoint folders


def resolve_checkpoint_dir(checkpoint_dir: Union[str, Path]) -> Path:
    """The folder itself if it exists, else checkpoints/ORG/NAME for a bare `ORG/NAME`."""
    path = Path(checkpoint_dir)
    if path.is_dir():
        return path
    candidate = Path("checkpoints") / path
    if not path.is_absolute() and candidate.is_dir():
        return candidate
    raise FileNotFoundError(
        f"No checkpoint folder at {str(path)!r}" + ("" if path.is_absolute() else f" nor {str(candidate)!r}")
        + "; download one with `litgpt download ORG/NAME`"
    )


def precision_name(dtype: "torch.dtype") -> str:
    """The Lightning precision name of a weights' dtype (the inverse of `precision_dtype`)."""
    import torch

    return {torch.bfloat16: "bf16-true", torch.float16: "16-true", torch.float32: "32-true", torch.float64: "64-true"}[dtype]


def precision_dtype(precision: Optional[str], device: "torch.device") -> "torch.dtype":
    """The weights' dtype for a Lightning precision name. None picks, as LitGPT does on GPUs, bf16 where the GPU has
    it and fp16 where it does not (a T4, a V100); on the CPU fp32 (LitGPT picks bf16 there, which most CPUs run
    slower than fp32 and which rounds what the CPU tests compare)."""
    import torch

    if precision is None:
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return getattr(torch, PRECISIONS[precision])


def load_model(
    checkpoint_dir: Path, device: Union[str, "torch.device"] = "cpu", precision: Optional[str] = None
) -> "GPT":
    """Build the GPT of a checkpoint folder and load `lit_model.pth` into it, in eval mode, on `device`."""
    import torch

    from litgpt.config import Config
    from litgpt.model import GPT

    device = torch.device(device)
    weights = Path(checkpoint_dir) / "lit_model.pth"
    if not weights.is_file():
        raise FileNotFoundError(f"No lit_model.pth in {str(checkpoint_dir)!r}; convert a Hugging Face folder with `litgpt convert_to_litgpt`")
    config = Config.from_checkpoint(checkpoint_dir)
    with torch.device("meta"):
        model = GPT(config)
    state_dict = model_state_dict(read_plain(weights, mmap=True))
    check_shapes(model, state_dict, weights)
    model.load_state_dict(state_dict, assign=True)
    model.reset_parameters()  # the RoPE cache was built on the meta device
    return model.to(device=device, dtype=precision_dtype(precision, device)).eval()


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face weights


def hf_weight_files(checkpoint_dir: Path) -> List[Path]:
    """The weight files of an HF checkpoint folder, safetensors preferred, shards in index order."""
    checkpoint_dir = Path(checkpoint_dir)
    for index_name, pattern in (("model.safetensors.index.json", "model*.safetensors"), ("pytorch_model.bin.index.json", "pytorch_model*.bin")):
        index = checkpoint_dir / index_name
        if index.is_file():
            weight_map = read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{index} has no weight_map")
            files = [checkpoint_dir / name for name in dict.fromkeys(weight_map.values())]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise CheckpointError(f"{index} lists shards that are missing: {', '.join(missing)}")
            return files
        files = sorted(checkpoint_dir.glob(pattern))
        if files:
            return files
    raise CheckpointError(
        f"{checkpoint_dir} holds no model weights (model.safetensors, pytorch_model.bin or their sharded forms)"
    )


def count_hf_tensors(files: List[Path]) -> Optional[int]:
    """How many tensors the files hold, when their headers say so without loading them (safetensors)."""
    total = 0
    for path in files:
        if path.suffix != ".safetensors":
            return None
        total += sum(1 for name in _safetensors_header(path) if name != "__metadata__")
    return total


def iter_hf_weights(files: List[Path]) -> Iterator[Tuple[str, Any]]:
    """(name, tensor) pairs, read lazily: one tensor at a time from safetensors, memory-mapped from `.bin` files."""
    for path in files:
        if path.suffix == ".safetensors":
            yield from _iter_safetensors(path)
        else:
            state_dict = read_plain(path, mmap=True)
            yield from state_dict.items()
            del state_dict


def _iter_safetensors(path: Path) -> Iterator[Tuple[str, Any]]:
    from safetensors import safe_open

    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # SafetensorError is not importable in every safetensors version
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    with handle as f:
        for name in f.keys():
            try:
                tensor = f.get_tensor(name)
            except Exception as e:
                raise CheckpointError(f"{path}: cannot read tensor {name!r}: {e}") from None
            yield name, tensor


def _safetensors_header(path: Path) -> Dict[str, Any]:
    """The JSON header of a safetensors file (names, dtypes, shapes, offsets), read without the data."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if size <= 0 or size > 100_000_000 or size + 8 > path.stat().st_size:
                raise ValueError("bad header size")
            return json.loads(f.read(size))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None


# ---------------------------------------------------------------------------------------------------------------
# LitGPT weights files


def load_state_dict(path: Union[str, Path]) -> Dict[str, Any]:
    """A `.pth` file's contents, memory-mapped so that tensors are read from disk only when used."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    return read_plain(path, mmap=True)


def check_shapes(model: Any, state_dict: Dict[str, Any], path: Union[str, Path]) -> None:
    """Raise a one-line CheckpointError if a tensor of `state_dict` does not fit the model's (built from the
    folder's model_config.yaml)."""
    expected = model.state_dict()
    for name, tensor in state_dict.items():
        want = expected.get(name)
        if want is not None and hasattr(tensor, "shape") and tuple(tensor.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {tuple(tensor.shape)} but model_config.yaml gives {tuple(want.shape)}; "
                "the weights and the config come from different models"
            )


def model_state_dict(obj: Any) -> Dict[str, Any]:
    """The model's weights in a loaded checkpoint: a plain state dict, or a training checkpoint's `model` entry.

    Strips the key prefixes that training wrappers add (`_forward_module.`, `_orig_mod.`, `module.`).
    """
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"expected a state dict, got {type(obj).__name__}")
    state_dict = {}
    for key, value in obj.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        state_dict[key] = value
    return state_dict


def read_plain(path: Union[str, Path], allowed: Tuple[Any, ...] = (), mmap: bool = False) -> Any:
    """A torch file's tensors and plain containers (`weights_only=True`, plus the `allowed` classes and functions).

    Files of checkpoints come from anyone: a file that needs more than that is refused, never unpickled (loading
    it would run the code it names). Every failure is a one-line `CheckpointError`.
    """
    import torch

    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): a copy or save that did not finish; copy or convert it again")
    import warnings

    safe = getattr(torch.serialization, "safe_globals", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. about the pickle protocol of a file we refuse anyway
            if safe is None:  # torch < 2.5
                torch.serialization.add_safe_globals(list(allowed))
                return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
            with safe(list(allowed)):
                return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as e:
        raise unpickling_refused(path, e) from None
    except RuntimeError as e:
        if mmap and "mmap" in str(e):  # files in torch's pre-1.6 format cannot be memory-mapped
            return read_plain(path, allowed, mmap=False)
        reason = str(e).splitlines()[0].split(". ")[0]  # torch's first sentence; the rest is advice of its own
        raise CheckpointError(f"{path} cannot be read (truncated or corrupt?): {reason}; copy or convert it again") from None
    except (EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read (truncated or corrupt?): {e}") from None


def unpickling_refused(path: Union[str, Path], error: Exception) -> CheckpointError:
    """The one-line error for a torch file that `weights_only=True` refused, naming what its pickle imports."""
    import re

    named = re.findall(r"GLOBAL ([\w.]+)", str(error))
    reason = f"it names {named[0]}" if named else "Python objects"
    return CheckpointError(f"{path} holds more than tensors and plain values ({reason}); refusing to unpickle it, as that could run code")


def save_state_dict_atomic(state_dict: Dict[str, Any], path: Union[str, Path]) -> None:
    """`torch.save` to `path.tmp`, then rename onto `path`: nothing partial is left if it fails."""
    import torch

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state_dict, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def incremental_save(path: Union[str, Path]) -> Iterator["IncrementalSaver"]:
    """Write a state dict one tensor at a time, so that it never has to be in memory whole.

    Yields an `IncrementalSaver`; the file appears at `path` only when the block ends without an error.
    """
    import torch

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with torch.serialization._open_zipfile_writer(str(tmp)) as archive:
            saver = IncrementalSaver(archive)
            yield saver
            saver._finish()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class IncrementalSaver:
    """Writes tensors into a `torch.save` archive as they come; `torch.load` reads the result like any other.

    A tensor's bytes go to the archive at once; the state dict keeps only a small reference to them, and the
    pickled dict (`data.pkl`) is written last.
    """

    def __init__(self, archive: Any) -> None:
        self._archive = archive
        self._n_records = 0
        self.state_dict: Dict[str, _StoredTensor] = {}

    def store(self, tensor: Any) -> "_StoredTensor":
        """Write a tensor's bytes now; the returned reference can be put in `state_dict` under any key(s)."""
        import torch

        tensor = tensor.detach().cpu().contiguous()
        storage = tensor.untyped_storage()
        if tensor.storage_offset() or storage.nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()  # a view into a larger tensor: keep only its own bytes
            storage = tensor.untyped_storage()
        key = str(self._n_records)
        self._n_records += 1
        self._archive.write_record(f"data/{key}", storage, storage.nbytes())
        return _StoredTensor(key, tensor.dtype, tuple(tensor.shape), tensor.stride(), tensor.numel(), torch)

    def __setitem__(self, name: str, tensor: Any) -> None:
        self.state_dict[name] = tensor if isinstance(tensor, _StoredTensor) else self.store(tensor)

    def _finish(self) -> None:
        buffer = _ArchivePickler.dumps(self.state_dict)
        self._archive.write_record("data.pkl", buffer, len(buffer))
        for name, value in ((".format_version", "1"), (".storage_alignment", "64"), ("byteorder", sys.byteorder)):
            self._archive.write_record(name, value, len(value))


class _StoredTensor:
    """A tensor whose bytes are already in the archive; it pickles as torch pickles a tensor."""

    def __init__(self, key: str, dtype: Any, shape: tuple, stride: tuple, numel: int, torch: Any) -> None:
        self.key, self.dtype, self.shape, self.stride, self.numel = key, dtype, shape, stride, numel
        storage_types = torch.storage._dtype_to_storage_type_map()
        if dtype not in storage_types:
            raise CheckpointError(f"cannot stream tensors of dtype {dtype} into a .pth file")
        self._storage_type = getattr(torch, storage_types[dtype])
        self._rebuild = torch._utils._rebuild_tensor_v2

    def __reduce__(self) -> tuple:
        from collections import OrderedDict

        return self._rebuild, (_StorageRef(self), 0, self.shape, self.stride, False, OrderedDict())


class _StorageRef:
    def __init__(self, tensor: _StoredTensor) -> None:
        self.tensor = tensor


class _ArchivePickler(pickle.Pickler):
    # storages are referenced by record name, as torch.save does ("storage", type, key, location, numel)
    def persistent_id(self, obj: Any) -> Optional[tuple]:
        if isinstance(obj, _StorageRef):
            t = obj.tensor
            return ("storage", t._storage_type, t.key, "cpu", t.numel)
        return None

    @classmethod
    def dumps(cls, obj: Any) -> bytes:
        import io

        buffer = io.BytesIO()
        cls(buffer, protocol=2).dump(obj)
        return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# Other files of a checkpoint folder


def copy_tokenizer_files(source_dir: Union[str, Path], target_dir: Union[str, Path], names: Tuple[str, ...] = TOKENIZER_FILES) -> List[str]:
    """Copy the tokenizer and config files that exist in `source_dir`; returns the names copied."""
    source_dir, target_dir = Path(source_dir), Path(target_dir)
    if source_dir.resolve() == target_dir.resolve():
        return []
    target_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in names:
        if (source_dir / name).is_file():
            shutil.copyfile(source_dir / name, target_dir / name)
            copied.append(name)
    return copied


def write_json_atomic(obj: Any, path: Union[str, Path]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_optional_json(path: Path) -> Dict[str, Any]:
    """The object in a JSON file, or {} if there is no such file.

    generation_config.json is read leniently, with a warning, as LitGPT does: some published ones (Llama 3.2's)
    have trailing commas.
    """
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except ValueError as e:
            if path.name != "generation_config.json":
                raise
            data = _loads_without_trailing_commas(text, e)
            print(f"Warning: {path} is not valid JSON ({first_line(e)}); read it ignoring trailing commas", file=sys.stderr)
    except (ValueError, OSError) as e:
        raise ValueError(f"Could not read {path}: {first_line(e)}") from e
    return data if isinstance(data, dict) else {}


def first_line(error: Exception) -> str:
    """An error's message cut to its first line (its type's name if it has none), for a one-line report."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# a string literal (kept as it is) or a comma that only whitespace separates from a closing bracket
_STRING_OR_TRAILING_COMMA = re.compile(r'("(?:[^"\\]|\\.)*")|,(?=\s*[}\]])')


def _loads_without_trailing_commas(text: str, error: ValueError) -> Any:
    """json.loads of `text` without its trailing commas; raises `error` if that does not parse either."""
    try:
        return json.loads(_STRING_OR_TRAILING_COMMA.sub(lambda m: m.group(1) or "", text))
    except ValueError:
        raise error from None


def read_json(path: Union[str, Path]) -> Dict[str, Any]:
    """The object in a JSON file the checkpoint must have; CheckpointError if it cannot be read."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not readable JSON: {e}") from None



def parse_dtype(name: Optional[str]) -> Any:
    """A torch dtype from `bf16`/`bfloat16`/`16-true`-style names; None stays None (keep the stored dtype)."""
    if name is None:
        return None
    import torch

    aliases = {
        ("bf16", "bfloat16", "bf16-true", "bf16-mixed", "torch.bfloat16"): torch.bfloat16,
        ("fp16", "float16", "half", "16", "16-true", "16-mixed", "torch.float16"): torch.float16,
        ("fp32", "float32", "float", "32", "32-true", "torch.float32"): torch.float32,
    }
    for names, dtype in aliases.items():
        if str(name).lower() in names:
            return dtype
    raise CheckpointError(f"unknown dtype {name!r}: use bf16, fp16 or fp32")
