"""LitGPT 0.5.13 as the reference the benchmarks run beside this project: its source tree, and how to start it.

    python benchmarks/reference.py prepare      # extract litgpt/ at tag v0.5.13 from the git mirror into .ref/litgpt-0.5.13
    python benchmarks/reference.py check        # start it here: the litgpt it imports, or the module it lacks

LitGPT is only ever run, never imported by this project: a benchmark starts `python -m litgpt ...` in a child
process whose PYTHONPATH begins with the tree and whose working directory is the run's own folder (with `-m` the
working directory comes first on sys.path, so the repository root would give our package instead). `.ref/` is
git-ignored; name it in the device tool's `carry` to take the tree to the GPU machine.

What LitGPT 0.5.13 imports to start `finetune_lora` and `pretrain` (`litgpt/__main__.py` imports every command):
torch, lightning (with torchmetrics), jsonargparse[signatures], tokenizers, safetensors, huggingface_hub, tqdm, pyyaml,
jinja2 (torch has these), and two that nothing else here pulls in: psutil (imported by litgpt/utils.py at the top,
used only to end child processes) and requests (its CLI enables URLs in --config through jsonargparse, which needs
it). Everything else is optional and not used by the benchmarks' runs: litdata (its streaming data modules; the
benchmarks give their own data), litserve (`serve`), lm_eval and datasets (`evaluate`), bitsandbytes (--quantize),
sentencepiece (tokenizer.model files), litlogger / tensorboard / wandb / mlflow (other loggers; the runs log to CSV),
zstandard and pandas/pyarrow (data preparation scripts). The H200 image holds all of the needed ones (psutil and
requests too, by /work/.library/device/KINDS.md's list) but jsonargparse, docstring_parser and typeshed_client, which
travel as wheels in .whl/ (LitGPT 0.5.13 pins jsonargparse <= 4.41; it runs with 4.53, printing deprecation warnings).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
VERSION = "0.5.13"
LABEL = f"LitGPT {VERSION}"
DEFAULT_TREE = ROOT / ".ref" / f"litgpt-{VERSION}"
DEFAULT_MIRROR = Path("/work/.mirror/Lightning-AI+litgpt/repo")


class ReferenceError(Exception):
    """The reference cannot be prepared or started; the message is one line that says what to do."""


def tree(path: Optional[Path] = None) -> Path:
    """The prepared LitGPT 0.5.13 tree (the folder that holds `litgpt/`): `path`, or .ref/litgpt-0.5.13."""
    path = Path(path) if path is not None else DEFAULT_TREE
    if not (path / "litgpt" / "__main__.py").is_file():
        raise ReferenceError(f"no LitGPT {VERSION} tree at {path} (no litgpt/__main__.py): run `python benchmarks/reference.py prepare`"
                             " where the git mirror is, and carry .ref to the device")
    return path


def prepare(dest: Path = DEFAULT_TREE, mirror: Path = DEFAULT_MIRROR) -> Path:
    """Extract `litgpt/` of tag v0.5.13 from the bare git `mirror` into `dest` (replacing what is there)."""
    if not (mirror / "HEAD").is_file():
        raise ReferenceError(f"no git mirror of LitGPT at {mirror}: pass --mirror with a bare clone of Lightning-AI/litgpt,"
                             " or copy a prepared .ref folder here")
    git = ["git", f"--git-dir={mirror}"]
    commit = subprocess.run([*git, "rev-parse", f"v{VERSION}^{{commit}}"], capture_output=True, text=True)
    if commit.returncode != 0:
        raise ReferenceError(f"the mirror at {mirror} has no tag v{VERSION}: fetch its tags")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        archive = subprocess.Popen([*git, "archive", f"v{VERSION}", "litgpt"], stdout=subprocess.PIPE)
        extract = subprocess.run(["tar", "-x", "-C", str(staging)], stdin=archive.stdout, capture_output=True, text=True)
        archive.stdout.close()
        if archive.wait() != 0 or extract.returncode != 0:
            raise ReferenceError(f"extracting v{VERSION} from {mirror} failed: {extract.stderr.strip() or 'git archive failed'}")
        (staging / "COMMIT").write_text(commit.stdout)
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def env(path: Path, extra_paths: List[str] = (), base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of a child process that runs LitGPT from `path`: its tree first on PYTHONPATH, then
    `extra_paths` (e.g. benchmarks/ for a data module), then the inherited PYTHONPATH's other entries (where carried
    wheels were installed), never this repository's root."""
    base = dict(os.environ if base is None else base)
    root = Path(__file__).resolve().parent.parent
    inherited = [p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != root]
    base["PYTHONPATH"] = os.pathsep.join([str(path), *map(str, extra_paths), *inherited])
    return base


def check(path: Path, extra_paths: List[str] = (), base: Optional[Dict[str, str]] = None) -> str:
    """Start LitGPT's CLI module in a child process as the benchmarks do; the file of the `litgpt` it imported.
    Raises ReferenceError naming the missing module (or the first error) when it cannot start."""
    probe = ("import litgpt, litgpt.__main__, jsonargparse;"
             "jsonargparse.set_config_read_mode(urls_enabled=True);"  # as its CLI does: needs requests
             "print(litgpt.__file__)")
    with tempfile.TemporaryDirectory() as cwd:
        run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env(path, extra_paths, base), cwd=cwd)
    if run.returncode != 0:
        missing = re.findall(r"No module named '([^']+)'", run.stderr)
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        why = f"it lacks the module {missing[-1]!r} (pip install it, or carry its wheel)" if missing else (lines[-1] if lines else f"exit {run.returncode}")
        raise ReferenceError(f"{LABEL} at {path} cannot start with {sys.executable}: {why}")
    imported = Path(run.stdout.strip().splitlines()[-1]).resolve()
    if not imported.is_relative_to(path.resolve()):
        raise ReferenceError(f"the child process imported litgpt from {imported}, not from the tree {path}")
    return str(imported)


def peak_gib(output: str) -> Optional[float]:
    """The peak GPU memory LitGPT 0.5.13's finetuning and pretraining reports print ("Memory Used : X GB", from
    torch.cuda.max_memory_allocated, CUDA only), in GiB."""
    found = re.findall(r"Memory Used\s*:\s*([0-9.]+) GB", output)
    return round(float(found[-1]) * 1e9 / 2**30, 1) if found else None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["prepare", "check"])
    parser.add_argument("--path", type=Path, default=DEFAULT_TREE, help="the tree (default .ref/litgpt-0.5.13)")
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR, help="a bare git clone of Lightning-AI/litgpt")
    args = parser.parse_args(argv)
    try:
        if args.action == "prepare":
            print(f"{LABEL} extracted to {prepare(args.path, args.mirror)}")
        else:
            print(f"{LABEL} starts: {check(tree(args.path))}")
    except ReferenceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
