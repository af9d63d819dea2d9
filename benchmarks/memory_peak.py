"""What is allocated at the peak of a CUDA memory snapshot, grouped by the code that allocated it.

    python benchmarks/lora_throughput.py --cases Llama-3.2-1B:8 --compile yes --memory_snapshot /tmp/lora
    python benchmarks/memory_peak.py /tmp/lora-0.pickle

Replays the snapshot's allocation trace (torch.cuda.memory._record_memory_history) from what was allocated
before the recording began, finds the moment of the largest total, and prints the blocks alive then by their
innermost frame outside torch's own Python files (an inductor-generated file and line for compiled code). Needs
no GPU.
"""

import argparse
import linecache
import pickle
from collections import defaultdict
from typing import Dict, List, Tuple


def where(frames: List[Dict], depth: int) -> str:
    """The innermost `depth` frames that are not torch's own modules (inductor's generated code counts as ours)."""
    ours = [f for f in frames if f.get("filename", "").endswith(".py")
            and ("/torch/" not in f["filename"] or "torchinductor" in f["filename"])]
    ours = ours or [f for f in frames if f.get("filename", "").endswith(".py")] or frames
    shown = [f"{f.get('filename', '?').rsplit('/', 1)[-1]}:{f.get('line', '?')} {f.get('name', '')}" for f in ours[:depth]]
    source = linecache.getline(ours[0].get("filename", ""), ours[0].get("line", 0)).strip() if ours else ""
    return " < ".join(shown) + (f"  [{source[:100]}]" if source else "")


def peak(snapshot: Dict, device: int = 0) -> Tuple[int, int, Dict[int, Tuple[int, List[Dict]]]]:
    """(bytes before the recording, peak bytes, the blocks alive at the peak: addr -> (size, frames))."""
    trace = snapshot["device_traces"][device]
    traced = {event["addr"] for event in trace if event["action"] == "alloc"}
    before = {block["address"]: (block["size"], block.get("frames", []))
              for segment in snapshot["segments"] if segment.get("device", 0) == device
              for block in segment["blocks"] if block["state"] == "active_allocated" and block["address"] not in traced}
    # blocks freed during the recording that were allocated before it are in the trace as frees only
    alive: Dict[int, Tuple[int, List[Dict]]] = dict(before)
    for event in trace:
        if event["action"] in ("free_requested", "free_completed") and event["addr"] not in traced and event["addr"] not in alive:
            alive[event["addr"]] = (event["size"], event.get("frames", []))
    base = sum(size for size, _ in alive.values())
    total, best, best_alive = base, base, dict(alive)
    for event in trace:
        if event["action"] == "alloc":
            alive[event["addr"]] = (event["size"], event.get("frames", []))
            total += event["size"]
            if total > best:
                best, best_alive = total, dict(alive)
        elif event["action"] == "free_completed" and event["addr"] in alive:
            total -= alive.pop(event["addr"])[0]
    return base, best, best_alive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshot")
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--depth", type=int, default=2, help="frames shown per group")
    args = parser.parse_args()
    with open(args.snapshot, "rb") as f:
        snapshot = pickle.load(f)
    base, best, alive = peak(snapshot)
    groups: Dict[str, List[int]] = defaultdict(lambda: [0, 0])
    for size, frames in alive.values():
        key = where(frames, args.depth) if frames else "(allocated before the recording)"
        groups[key][0] += size
        groups[key][1] += 1
    gib = 2**30
    print(f"before the recording {base / gib:.2f} GiB, peak {best / gib:.2f} GiB, {len(alive)} blocks alive at the peak")
    print("GiB | blocks | allocated at")
    for key, (size, count) in sorted(groups.items(), key=lambda kv: -kv[1][0])[: args.rows]:
        print(f"{size / gib:.2f} | {count} | {key}")


if __name__ == "__main__":
    main()
