"""Record files fetched once: a later run (or an offline one) uses the local copy as it is."""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from litgpt.data.sft import read_records


def download_if_missing(path: Path, url: str) -> None:
    """Fetch `url` to `path` unless the file is there already (so a local copy is used as it is)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > 0:
        return
    import urllib.request

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        tmp.replace(path)
    except OSError as e:
        raise ConnectionError(f"Could not download {url} to {path}: {e}; place the file there yourself to work offline") from None
    finally:
        tmp.unlink(missing_ok=True)


def hf_dataset_if_missing(repo_id: str, path: Path, split: str = "train", access_token: Optional[str] = None) -> None:
    """Fetch a Hugging Face data set's parquet/json files of `split` and write its records to `path` (.json),
    unless the file is there already."""
    if path.is_file():
        return
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
