"""FSDP on one GPU: Fabric's FSDPStrategy, the strategy `litgpt pretrain --devices N` takes on N > 1 GPUs, wrapped
around the real command with one process, so that FSDP's wrapping, its checkpoint save and its resume run where only
one GPU is lent. Prints JSON lines and exits non-zero if a check fails.

    python benchmarks/fsdp_one_gpu.py

Three runs of `litgpt pretrain` (a 2-layer Llama-style model, generated tokens from `synthetic_tokens.ZipfTokens`,
32-true, 8 steps): FSDP uninterrupted (checkpoints at steps 4 and 8), FSDP resumed from its step-4 checkpoint, and
the single-device strategy. Checks: the resumed run ends with the uninterrupted run's weights (bit-exact) and
losses; FSDP's losses equal the single device's within 1e-5 (the same sums in another order).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = dict(name="fsdp-tiny", block_size=128, vocab_size=512, padded_vocab_size=512, n_layer=2, n_head=4, n_embd=64,
             rotary_percentage=1.0, parallel_residual=False, bias=False, norm_class_name="RMSNorm",
             mlp_class_name="LLaMAMLP", intermediate_size=128)


def child(argv) -> None:
    """`litgpt pretrain` with FSDP even on one device (the command itself picks FSDP only for several GPUs)."""
    import lightning as L

    from litgpt.__main__ import main
    from litgpt.train import loop

    def fsdp_fabric(devices, num_nodes, precision, loggers, block_class):
        strategy = loop.fsdp_strategy(block_class, num_nodes)
        return L.Fabric(devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision, loggers=loggers)

    if os.environ.get("FSDP_ONE_GPU") == "1":
        loop.make_fabric = fsdp_fabric
    main(argv)


def pretrain(out: Path, config: Path, fsdp: bool, resume: Path = None) -> dict:
    command = [sys.executable, __file__, "--child", "pretrain", "--model_config", str(config),
               "--data", "synthetic_tokens.ZipfTokens", "--data.vocab_size", "512", "--out_dir", str(out),
               "--devices", "1", "--logger_name", "csv", "--precision", "32-true", "--compile", "false",
               "--optimizer", json.dumps({"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003}}),
               "--train.max_steps", "8", "--train.global_batch_size", "8", "--train.micro_batch_size", "4",
               "--train.max_seq_length", "128", "--train.lr_warmup_steps", "2", "--train.log_interval", "1",
               "--train.save_interval", "4", "--eval.final_validation", "false"]
    command += ["--resume", str(resume)] if resume else []
    env = {**os.environ, "FSDP_ONE_GPU": "1" if fsdp else "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    losses = {}
    for path in sorted((out / "logs" / "csv").glob("version_*/metrics.csv")):
        with open(path, newline="") as f:
            losses.update({int(r["step"]): float(r["loss"]) for r in csv.DictReader(f) if r.get("loss")})
    return {"rc": result.returncode, "tail": (result.stdout + result.stderr)[-1500:], "losses": losses}


def weights(out: Path) -> dict:
    import torch

    state = torch.load(out / "final" / "lit_model.pth", map_location="cpu", weights_only=True)
    return state.get("model", state)


def main() -> int:
    import torch
    import yaml

    tmp = Path(tempfile.mkdtemp(prefix="fsdp-one-gpu-"))
    config = tmp / "model_config.yaml"
    config.write_text(yaml.safe_dump(MODEL))
    runs = {"fsdp": pretrain(tmp / "fsdp", config, fsdp=True), "single": pretrain(tmp / "single", config, fsdp=False)}
    runs["resumed"] = pretrain(tmp / "resumed", config, fsdp=True, resume=tmp / "fsdp" / "step-00000004")
    for name, run in runs.items():
        print(json.dumps({"bench": "fsdp_one_gpu", "run": name, "rc": run["rc"], "losses": run["losses"]}))
        if run["rc"] != 0:
            print(run["tail"])
            return 1
    a, b = weights(tmp / "fsdp"), weights(tmp / "resumed")
    checks = {"resumed_weights_equal": a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)}
    fsdp_losses, resumed_losses = runs["fsdp"]["losses"], runs["resumed"]["losses"]
    checks["resumed_losses_equal"] = all(abs(fsdp_losses[s] - resumed_losses[s]) == 0.0 for s in range(5, 9))
    single = runs["single"]["losses"]
    checks["fsdp_matches_single_device"] = max(abs(fsdp_losses[s] - single[s]) for s in range(1, 9)) < 1e-5
    checks["weights_finite"] = all(torch.isfinite(t).all() for t in a.values())
    print(json.dumps({"bench": "fsdp_one_gpu", **checks, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.parse_args()
        sys.exit(main())
