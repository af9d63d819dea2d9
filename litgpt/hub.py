"""`litgpt download`: fetch a model from the Hugging Face Hub into checkpoints/ORG/NAME and convert it.

    repo id ──model_info──> file list ──pick──> hf_hub_download, one progress bar per file ──> convert_to_litgpt

Only the files a checkpoint folder needs are fetched: config.json, generation_config.json, the tokenizer
files and one copy of the weights (safetensors when the repo has them, else .bin), sharded or not.
Files land in the folder itself (`local_dir`), so a rerun skips every file already complete. Within a run,
huggingface_hub resumes a dropped connection with a Range request; a file cut off when the run itself ends
starts over on the next run (recent huggingface_hub versions discard partial files).
"""

import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

from litgpt.checkpoint import TOKENIZER_FILES, TOKENIZER_MODEL_FILES

# (index of a sharded checkpoint, single-file checkpoint, suffix), in order of preference
WEIGHT_LAYOUTS = (
    ("model.safetensors.index.json", "model.safetensors", ".safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin", ".bin"),
)
NOT_WEIGHTS = {"training_args.bin", "optimizer.bin", "scheduler.bin"}
# exception class names (any HTTP client huggingface_hub has used: requests, httpx, httpx2) meaning the
# network failed rather than the Hub answering
NETWORK_ERRORS = {"ConnectionError", "TransportError", "Timeout", "ChunkedEncodingError", "ProtocolError"}


def download(
    repo_id: str,
    *,
    checkpoint_dir: Path = Path("checkpoints"),
    tokenizer_only: bool = False,
    access_token: Optional[str] = None,
    model_name: Optional[str] = None,
    dtype: Optional[str] = None,
    convert_checkpoint: bool = True,
) -> None:
    """Download a model from the Hugging Face Hub into CHECKPOINT_DIR/ORG/NAME and convert it for LitGPT.

    Args:
        repo_id: The Hub repository, ORG/NAME; `list` prints every model of the registry instead.
        checkpoint_dir: Where to download; the files land in CHECKPOINT_DIR/ORG/NAME.
        tokenizer_only: Fetch only the tokenizer files, config.json and generation_config.json; no weights.
        access_token: A Hugging Face token, needed for gated and private repos. If not given, the HF_TOKEN
            environment variable or the token saved by `hf auth login` is used.
        model_name: The registry name whose config to use, for weights of a known architecture published
            under another repo id. By default the repo id's registry entry, else a config derived from config.json.
        dtype: Store the converted weights in this dtype: bf16, fp16 or fp32 (torch names such as bfloat16
            work too). By default they keep the checkpoint's dtype.
        convert_checkpoint: Convert the downloaded weights to lit_model.pth and model_config.yaml.
    """
    if repo_id == "list":
        print("\n".join(downloadable()))
        return
    _check_repo_id(repo_id)
    convert = convert_checkpoint and not tokenizer_only
    if convert:
        _check_conversion_options(repo_id, model_name, dtype)
    local_dir = Path(checkpoint_dir) / repo_id
    fetch(repo_id, local_dir, tokenizer_only=tokenizer_only, token=access_token)
    if convert:
        from litgpt.convert.hf_to_lit import convert_to_litgpt

        convert_to_litgpt(local_dir, model_name=model_name, dtype=dtype)


def resolve(name_or_path: Union[str, Path], access_token: Optional[str] = None) -> Path:
    """The local checkpoint folder of a folder path, `checkpoints/ORG/NAME`, or a registry name (model or
    Hugging Face repo id), downloading a known model to checkpoints/ when it is not there yet."""
    for candidate in (Path(name_or_path), Path("checkpoints") / name_or_path):
        if candidate.is_dir() and ((candidate / "lit_model.pth").is_file() or (candidate / "model_config.yaml").is_file()):
            return candidate
    from litgpt.config import find_entry

    entry = find_entry(str(name_or_path))
    if entry is None:
        if Path(name_or_path).is_dir():
            raise FileNotFoundError(f"{str(name_or_path)!r} has no lit_model.pth; convert it with `litgpt convert_to_litgpt`")
        raise ValueError(f"{str(name_or_path)!r} is neither a checkpoint folder nor a known model name (`litgpt download list`)")
    repo_id = f"{entry['hf_config']['org']}/{entry['hf_config']['name']}"
    print(f"Downloading {repo_id} to checkpoints/{repo_id}", file=sys.stderr)
    download(repo_id, checkpoint_dir=Path("checkpoints"), access_token=access_token)
    return Path("checkpoints") / repo_id


def downloadable() -> List[str]:
    """The `org/name` repo id of every registry entry, sorted case-insensitively."""
    from litgpt.config import registry

    ids = {f"{e['hf_config']['org']}/{e['hf_config']['name']}" for e in registry() if e.get("hf_config")}
    return sorted(ids, key=lambda repo: (repo.lower(), repo))


def fetch(repo_id: str, local_dir: Path, *, tokenizer_only: bool = False, token: Optional[str] = None) -> List[Path]:
    """Download what a checkpoint folder needs from `repo_id` into `local_dir`; returns the local paths."""
    from huggingface_hub import HfApi, hf_hub_download

    def get(filename: str) -> Path:
        # a commit sha as revision: files already complete in local_dir are taken without a network call
        return Path(hf_hub_download(repo_id, filename, revision=sha, local_dir=local_dir, token=token))

    with _hub_errors(repo_id, token):
        info = HfApi().model_info(repo_id, token=token)
        sha, names = info.sha, [s.rfilename for s in info.siblings or []]
        wanted = [n for n in TOKENIZER_FILES if n in names]
        if not any(n in names for n in TOKENIZER_MODEL_FILES):
            _warn(f"{repo_id} has no {' or '.join(TOKENIZER_MODEL_FILES)}, so litgpt cannot tokenize text for it")
        paths = [get(n) for n in wanted]
        if not tokenizer_only:
            index, weights = _weight_files(repo_id, names)
            if index is not None:
                paths.append(get(index))
                weights = _shards(repo_id, paths[-1], names)
            paths += [get(n) for n in weights]
    return paths


def _weight_files(repo_id: str, names: List[str]) -> Tuple[Optional[str], List[str]]:
    """The index file (None if unsharded) and the weight files to fetch: safetensors if any, else .bin."""
    top = [n for n in names if "/" not in n]  # subfolders hold other formats (e.g. Meta's original/)
    for index, single, _ in WEIGHT_LAYOUTS:
        if index in top:
            return index, []
        if single in top:
            return None, [single]
    for _, _, suffix in WEIGHT_LAYOUTS:
        found = sorted(n for n in top if n.endswith(suffix) and n not in NOT_WEIGHTS)
        if found:
            return None, found
    raise ValueError(
        f"{repo_id} has no weights in safetensors or .bin format; `--tokenizer_only true` fetches just its tokenizer"
    )


def _shards(repo_id: str, index: Path, names: List[str]) -> List[str]:
    """The shard files an index's weight_map names, each once, in order."""
    weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index.name} of {repo_id} has no weight_map, so its shards are unknown")
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if s not in names]
    if missing:
        raise ValueError(f"{index.name} of {repo_id} names shards the repo lacks: {', '.join(missing)}")
    return shards


def _check_repo_id(repo_id: str) -> None:
    if re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id) and not {".", ".."} & set(repo_id.split("/")):
        return
    from litgpt.config import find_entry

    entry = find_entry(repo_id)
    hint = f"; did you mean {entry['hf_config']['org']}/{entry['hf_config']['name']}?" if entry else ""
    raise ValueError(f"{repo_id!r} is not a Hub repo id of the form ORG/NAME{hint} (`litgpt download list` shows them)")


def _check_conversion_options(repo_id: str, model_name: Optional[str], dtype: Optional[str]) -> None:
    """Reject bad conversion options before anything is downloaded."""
    from litgpt.config import find_entry

    if model_name is not None and find_entry(model_name) is None:
        raise ValueError(f"--model_name {model_name!r} is not a known model name")
    if model_name is None and find_entry(repo_id) is None:
        _warn(
            f"{repo_id} is not in litgpt's registry: its config will be derived from its config.json "
            "(pass --model_name to use a registry config instead)"
        )
    if dtype is not None:
        from litgpt.checkpoint import parse_dtype

        parse_dtype(dtype)


def _warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr)


@contextmanager
def _hub_errors(repo_id: str, token: Optional[str]) -> Iterator[None]:
    """Turn huggingface_hub's and the HTTP client's exceptions into one-line errors that say what to do."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.utils import GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    try:
        yield
    except GatedRepoError as error:
        page = f"{constants.ENDPOINT}/{repo_id}"
        if token or get_token():
            raise PermissionError(
                f"{repo_id} is gated and the token used has no access to it: accept its terms at {page} "
                "with the account the token belongs to, or pass another one with --access_token (or HF_TOKEN)"
            ) from error
        raise PermissionError(
            f"{repo_id} is gated: accept its terms at {page}, then pass a token with --access_token or set HF_TOKEN"
        ) from error
    except RepositoryNotFoundError as error:
        raise ValueError(
            f"No model repo {repo_id} on the Hugging Face Hub ({constants.ENDPOINT}), or it is private: check the "
            "id (`litgpt download list` shows the supported ones), or pass --access_token for a private repo"
        ) from error
    except Exception as error:
        chain = _chain(error)
        resume = "run the same command again to continue (files already complete are kept)"
        if any(isinstance(e, OfflineModeIsEnabled) for e in chain):
            raise ConnectionError(
                "HF_HUB_OFFLINE is set, so nothing can be downloaded: unset it to download, or use a folder "
                "downloaded before (e.g. checkpoints/ORG/NAME) directly"
            ) from error
        http = next((e for e in chain if isinstance(e, HfHubHTTPError) and e.response is not None), None)
        status = http.response.status_code if http is not None else None
        if status is not None and (status >= 500 or status in (408, 429)):
            raise ConnectionError(f"The Hugging Face Hub answered {status} for {repo_id}; wait a while, then {resume}") from error
        network = next((e for e in chain if {c.__name__ for c in type(e).__mro__} & NETWORK_ERRORS), None)
        if network is not None:
            raise ConnectionError(
                f"Cannot reach the Hugging Face Hub at {constants.ENDPOINT} ({_first_line(network)}): check your "
                f"network or proxy, then {resume}; folders downloaded before need no network (set HF_HUB_OFFLINE=1)"
            ) from error
        if status in (401, 403):
            raise PermissionError(
                f"The Hugging Face Hub refused access to {repo_id} ({status}): pass a token that has access "
                "with --access_token or set HF_TOKEN"
            ) from error
        if status is not None:
            raise ValueError(f"The Hugging Face Hub answered {status} for {repo_id}: {_first_line(http)}") from error
        raise


def _chain(error: BaseException) -> List[BaseException]:
    """The error, then its causes and contexts, each once."""
    seen: List[BaseException] = []
    while error is not None and not any(error is e for e in seen):
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
