"""`litgpt serve` under concurrent clients: generated tokens/s, time to first token and latency (p50/p99), errors,
for greedy and default-sampling requests, with the server's default batching and one at a time.

    python benchmarks/serve_throughput.py --model Llama-3.2-1B --device cuda --seconds 30        # 1/8/64/256 clients
    python benchmarks/serve_throughput.py --checkpoint_dir DIR --device cuda --seconds 30        # DIR is written first
    python benchmarks/serve_throughput.py --tiny --device cpu --clients 1 8 --requests 4         # a quick CPU smoke run

The server is `python -m litgpt serve` in a subprocess on 127.0.0.1, serving a checkpoint folder written here:
random weights of the registry config (`GPT(Config.from_name(model))`, fixed seed) and the byte-level BPE
tokenizer of litgpt/data/corpus/ (2,048 tokens; the model's vocabulary is larger). Every client thread sends
streamed /predict requests back to back on one keep-alive connection, for `--seconds` (requests in flight at the
deadline finish and count) or `--requests` each: "greedy" requests carry temperature 0, "sampled" ones only the
prompt (the server's defaults: temperature 0.8, top_k 50). A 503 is retried after its Retry-After (counted as a
retry, not an error). The server runs with its default flags (its own --max_batch_size unless `--max_batch_size`
is given) and serves every client count; a second one with `--max_batch_size 1` serves the largest count as the
one-at-a-time baseline, and the ratio of their generated tokens/s is printed per mode.

So that every reply is exactly `--new_tokens` tokens and countable from its text:
- the folder's tokenizer_config.json names no EOS token, so the server has no stop tokens and always
  generates `max_new_tokens` (its API has no "ignore EOS" switch);
- the output head keeps its random rows only for "word" tokens (a space and lowercase letters, ~1,000 of the
  2,048), and the other rows are zero: greedy decoding then never picks an id that the tokenizer lacks (those
  decode to nothing), and any sequence of word tokens decodes to text that encodes back to the same ids.
  Two word rows are each other's negatives, so the best word logit is never below the zeros. The head's cost
  does not depend on its values.
The prompts are random word-token sequences of exactly `--prompt_tokens` ids, after `--shared_prefix` ids that
are the same in every prompt (default none; the server copies a shared prefix's keys and values from a running
request's instead of computing them again). Each reply's tokens are counted
by encoding its text again (the "exact" column: every reply had exactly `--new_tokens`).
"""

import argparse
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import CORPUS, emit, table, write_random_checkpoint  # noqa: E402

from litgpt.config import Config  # noqa: E402
from litgpt.model import GPT  # noqa: E402
from litgpt.prompts import Default, save_prompt_style  # noqa: E402
from litgpt.tokenizer import Tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


# ---------------------------------------------------------------------------------------------------------------
# the checkpoint folder


def tiny_config() -> Config:
    """A 2-layer, width-64 Llama-style model with a vocabulary twice the tokenizer's: for CPU smoke runs."""
    return Config(
        name="tiny-llama-serve-bench", block_size=1024, vocab_size=4096, padded_vocab_size=4096, n_layer=2, n_embd=64,
        n_head=4, n_query_groups=2, intermediate_size=256, rotary_percentage=1.0, parallel_residual=False, bias=False,
        norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP",
    )


def word_tokens(tokenizer: Tokenizer) -> List[int]:
    """Ids of tokens that are a space and lowercase letters and encode back to themselves alone."""
    vocab = tokenizer.processor.get_vocab()
    ids = [i for token, i in vocab.items() if re.fullmatch("\u0120[a-z]+", token)]  # \u0120 is byte-level BPE's space
    return sorted(i for i in ids if tokenizer.encode(tokenizer.decode([i]), bos=False).tolist() == [i])


def write_checkpoint(folder: Path, config: Config, device: str, precision: str, seed: int) -> List[int]:
    """lit_model.pth (random weights, head limited to word tokens), model_config.yaml, tokenizer without EOS.

    Returns the word-token ids.
    """
    words = word_tokens(Tokenizer(CORPUS))

    def limit_head(model: GPT) -> None:
        head = model.lm_head.weight
        keep = torch.zeros(head.shape[0], dtype=torch.bool, device=head.device)
        keep[words] = True
        head[~keep] = 0
        head[words[1]] = -head[words[0]]
        if model.lm_head.bias is not None:
            model.lm_head.bias.zero_()

    write_random_checkpoint(folder, config, device, precision, seed, edit=limit_head)
    tokenizer_config = json.loads((CORPUS / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer_config.pop("eos_token", None)  # no stop token: every reply runs to max_new_tokens
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")
    save_prompt_style(Default(), folder)  # the prompt as sent, no template around it
    (folder / "serve_bench").write_text("written by benchmarks/serve_throughput.py: random weights\n")
    served = Tokenizer(folder)
    assert served.eos_id is None and not Default().stop_tokens(served), "the served tokenizer still has a stop token"
    return words


def make_prompts(tokenizer: Tokenizer, words: List[int], n_prompts: int, length: int, seed: int, shared: int = 0) -> List[str]:
    """Texts of `shared` random word tokens, the same in every prompt (a system prompt), then `length` more random
    word tokens each, checked to encode to exactly those ids."""
    rng = random.Random(seed)
    text_of = {i: tokenizer.decode([i]) for i in words}
    prefix = [rng.choice(words) for _ in range(shared)]
    prompts = []
    for _ in range(n_prompts):
        ids = prefix + [rng.choice(words) for _ in range(length)]
        text = "".join(text_of[i] for i in ids)
        if tokenizer.encode(text).tolist() != ids:
            raise AssertionError(f"a prompt does not encode back to its {len(ids)} ids")
        prompts.append(text)
    return prompts


# ---------------------------------------------------------------------------------------------------------------
# the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """`python -m litgpt serve` in its own process group, its output in a log file; `stop()` ends the group."""

    def __init__(self, folder: Path, log_path: Path, args: argparse.Namespace, max_batch_size: int) -> None:
        self.port = args.port or free_port()
        self.max_batch_size = max_batch_size
        self.log_path = log_path
        command = [
            sys.executable, "-m", "litgpt", "serve", str(folder), "--port", str(self.port), "--host", HOST,
            "--accelerator", args.device, "--devices", "1", "--precision", args.precision,
            "--max_new_tokens", str(args.new_tokens), "--stream", str(args.stream).lower(), "--timeout", str(args.queue_timeout),
        ] + (["--compile", args.compile] if args.compile != "default" else []) + (["--max_batch_size", str(max_batch_size)] if max_batch_size else []) \
          + (["--engine", args.engine] if args.engine != "default" else [])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            command, cwd=str(folder.parent), env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready after {timeout:.0f} s:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", "/health")
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status == 200:
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                    conn.request("GET", "/info")
                    self.max_batch_size = json.loads(conn.getresponse().read())["max_batch_size"]
                    conn.close()
                    return
            except OSError:
                pass
            time.sleep(0.5)

    def cpu_seconds(self) -> Tuple[float, float]:
        """CPU time (user + system) so far of the server's own process, and of the processes it started (the token
        loop's, with `--engine process`); zeros where /proc cannot tell."""
        def own(pid: int) -> float:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError, ValueError):
                return 0.0

        def children(pid: int) -> List[int]:
            try:
                found = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                return []
            return found + [d for c in found for d in children(c)]

        return own(self.process.pid), sum(own(c) for c in children(self.process.pid))

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM the server and the worker processes it started (its process group), SIGKILL if they linger."""
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self._log.close()


# ---------------------------------------------------------------------------------------------------------------
# the clients


class Result:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: List[Tuple[float, float, float, str]] = []  # (sent, first piece, answered, reply text)
        self.errors: List[str] = []
        self.retries = 0


def client(port: int, prompts: List[str], first: int, new_tokens: int, start: threading.Barrier,
           deadline: List[float], n_requests: Optional[int], result: Result, http_timeout: float, greedy: bool, stream: bool) -> None:
    """Send streamed requests back to back on one keep-alive connection until the deadline passes (or n_requests
    are done); a 503 is sent again after its Retry-After, another failure is counted and the next request follows."""
    conn = http.client.HTTPConnection(HOST, port, timeout=http_timeout)
    headers = {"Content-Type": "application/json"}
    start.wait()
    k = 0
    try:
        while (k < n_requests) if n_requests is not None else (time.perf_counter() < deadline[0]):
            request = {"prompt": prompts[(first + k) % len(prompts)]}
            if greedy:
                request.update(max_new_tokens=new_tokens, temperature=0)
            body = json.dumps(request)
            k += 1
            sent = time.perf_counter()
            while True:
                try:
                    conn.request("POST", "/predict", body=body, headers=headers)
                    response = conn.getresponse()
                    first_piece, data = None, b""
                    if not stream:  # read() whole: it also leaves the keep-alive connection ready for the next request
                        data = response.read()
                        first_piece = time.perf_counter()
                    while stream and (chunk := response.read1(65536)):
                        first_piece = first_piece or time.perf_counter()
                        data += chunk
                except (OSError, http.client.HTTPException) as error:
                    with result.lock:
                        result.errors.append(f"{type(error).__name__}: {error}")
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=http_timeout)
                    time.sleep(0.1)
                    break
                if response.status == 503:
                    with result.lock:
                        result.retries += 1
                    time.sleep(float(response.getheader("Retry-After", "1")))
                    continue
                answered = time.perf_counter()
                if response.status != 200:
                    with result.lock:
                        result.errors.append(f"HTTP {response.status}: {data[:200]!r}")
                    break
                # a streamed reply is lines of {"output": piece}; a whole one is {"output": text}
                pieces = [json.loads(line) for line in data.splitlines() if line.strip()]
                if any("error" in piece for piece in pieces):
                    with result.lock:
                        result.errors.append(f"in-stream error: {pieces[-1]}")
                    break
                with result.lock:
                    result.done.append((sent, first_piece or answered, answered, "".join(p["output"] for p in pieces)))
                break
    finally:
        conn.close()


def run_clients(port: int, prompts: List[str], n_clients: int, new_tokens: int, seconds: float,
                n_requests: Optional[int], http_timeout: float, greedy: bool, stream: bool) -> Tuple[Result, float]:
    """Start `n_clients` threads together; returns their results and the start time."""
    result = Result()
    barrier = threading.Barrier(n_clients + 1)
    deadline = [math.inf]
    stride = max(1, len(prompts) // n_clients)
    threads = [
        threading.Thread(
            target=client, args=(port, prompts, i * stride, new_tokens, barrier, deadline, n_requests, result, http_timeout, greedy, stream),
            daemon=True,
        )
        for i in range(n_clients)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    begin = time.perf_counter()
    deadline[0] = begin + seconds
    for thread in threads:
        thread.join()
    return result, begin


def percentile(values: List[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def measure(server: Server, tokenizer: Tokenizer, prompts: List[str], n_clients: int, args: argparse.Namespace, label: str,
            mode: str) -> Dict:
    cpu_before = server.cpu_seconds()
    result, begin = run_clients(server.port, prompts, n_clients, args.new_tokens, args.seconds, args.requests, args.http_timeout,
                                greedy=mode == "greedy", stream=args.stream)
    case = dict(
        bench="serve_throughput", model=args.model_label, device=args.device, precision=args.precision, server=label, mode=mode,
        compile=args.compile, engine=args.engine, stream=args.stream, max_batch_size=server.max_batch_size, clients=n_clients, prompt_tokens=args.prompt_tokens,
        shared_prefix=args.shared_prefix, new_tokens=args.new_tokens, errors=len(result.errors), retries_503=result.retries,
    )
    if result.errors:
        case.update(first_error=result.errors[0])
    if not result.done:
        case.update(requests=0, error="no request succeeded")
        return case
    cpu = [after - before for after, before in zip(server.cpu_seconds(), cpu_before)]
    # counted after the run, not to load the clients' interpreter while they measure
    counts = [len(tokenizer.encode(text)) for *_, text in result.done]
    wall = max(answered for _, _, answered, _ in result.done) - begin
    latencies = [answered - sent for sent, _, answered, _ in result.done]
    ttfts = [first - sent for sent, first, _, _ in result.done]
    case.update(
        requests=len(result.done), seconds=round(wall, 2), requests_per_s=round(len(result.done) / wall, 3),
        tokens_per_s=round(sum(counts) / wall, 1), ttft_p50_ms=round(percentile(ttfts, 50) * 1e3, 1),
        ttft_p99_ms=round(percentile(ttfts, 99) * 1e3, 1), p50_ms=round(percentile(latencies, 50) * 1e3, 1),
        p99_ms=round(percentile(latencies, 99) * 1e3, 1), new_tokens_min=min(counts), new_tokens_max=max(counts),
        exact=all(c == args.new_tokens for c in counts) and not result.errors,
        # how busy the server's processes were (100 = one core): the HTTP side, and the token loop's own process
        http_cpu_pct=round(100 * cpu[0] / wall, 1), engine_cpu_pct=round(100 * cpu[1] / wall, 1),
    )
    return case


def serve_cases(folder: Path, log_dir: Path, tokenizer: Tokenizer, prompts: List[str], args: argparse.Namespace,
                max_batch_size: Optional[int], client_counts: List[int], label: str) -> List[Dict]:
    server = Server(folder, log_dir / f"server-{label}.log", args, max_batch_size)
    cases = []
    try:
        started = time.monotonic()
        server.wait_ready(args.startup_timeout)
        print(f"{label} server: ready {time.monotonic() - started:.1f} s after launch (loading, planning, compiling)", flush=True)
        for mode in args.modes:
            for n in client_counts:
                # warm-up rounds of one request per client, as many clients as the server batches (a compiled
                # step meets this case's batch size before the clock starts)
                for _ in range(args.warmup):
                    warm = run_clients(server.port, prompts, min(n, server.max_batch_size), args.new_tokens, 0, 1, args.http_timeout,
                                       greedy=mode == "greedy", stream=args.stream)[0]
                    if warm.errors or not warm.done:
                        raise RuntimeError(f"warm-up failed: {warm.errors[:1]}\n{server.log_tail()}")
                case = measure(server, tokenizer, prompts, n, args, label, mode)
                emit(case)
                cases.append(case)
    finally:
        server.stop()
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="Llama-3.2-1B", help="registry config of the random-weight model")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer, width-64 Llama-style model instead (CPU smoke runs)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default=None, help="the server's --precision (default bf16-true on cuda, 32-true on cpu)")
    parser.add_argument("--stream", action="store_true",
                        help="stream the replies (the servers' --stream true); default: whole replies, as `litgpt serve` answers by default "
                             "(time to first token is then the whole reply's)")
    parser.add_argument("--engine", choices=["default", "process", "thread"], default="default",
                        help="the servers' --engine (default: theirs, the token loop in a process of its own)")
    parser.add_argument("--compile", choices=["default", "true", "false"], default="default",
                        help="the servers' --compile (default: theirs, compiled on CUDA)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64, 256], help="concurrent clients, one case each")
    parser.add_argument("--modes", nargs="+", choices=["greedy", "sampled"], default=["greedy", "sampled"],
                        help="greedy requests (temperature 0) and/or requests carrying only the prompt (the server's sampling)")
    parser.add_argument("--max_batch_size", type=int, default=None, help="of the batched server (default: the server's own)")
    parser.add_argument("--no_baseline", action="store_true", help="skip the one-at-a-time (--max_batch_size 1) server")
    parser.add_argument("--prompt_tokens", type=int, default=128)
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--shared_prefix", type=int, default=0,
                        help="this many tokens, the same for every request, come before each prompt's --prompt_tokens (a system prompt)")
    parser.add_argument("--seconds", type=float, default=30.0, help="each client sends requests for this long (per case)")
    parser.add_argument("--requests", type=int, default=None, help="instead of --seconds: this many requests per client")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up rounds before each case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint_dir", type=Path, default=None, help="write the checkpoint here (default: a temporary folder, deleted)")
    parser.add_argument("--port", type=int, default=0, help="the servers' port (default: a free one)")
    parser.add_argument("--startup_timeout", type=float, default=600.0, help="seconds to wait for a server to answer /health")
    parser.add_argument("--queue_timeout", type=int, default=3600, help="the server's --timeout (seconds a request may queue)")
    parser.add_argument("--http_timeout", type=float, default=1800.0, help="client socket timeout in seconds")
    args = parser.parse_args()
    if args.precision is None:
        args.precision = "bf16-true" if args.device == "cuda" else "32-true"
    if min(args.clients) < 1 or args.prompt_tokens < 1 or args.new_tokens < 1:
        parser.error("--clients, --prompt_tokens and --new_tokens must be positive")
    clients = sorted(set(args.clients))
    max_batch_size = args.max_batch_size
    config = tiny_config() if args.tiny else Config.from_name(args.model)
    args.model_label = config.name
    if args.shared_prefix < 0:
        parser.error("--shared_prefix must not be negative")
    if args.shared_prefix + args.prompt_tokens + args.new_tokens > config.block_size:
        parser.error(f"--shared_prefix + --prompt_tokens + --new_tokens exceeds {config.name}'s context ({config.block_size})")

    folder = args.checkpoint_dir
    if folder is not None and (folder / "lit_model.pth").is_file() and not (folder / "serve_bench").is_file():
        parser.error(f"--checkpoint_dir {folder} holds a checkpoint this script did not write; it writes random weights there, so name another folder")
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    folder = folder or work / "checkpoint"
    try:
        start = time.perf_counter()
        words = write_checkpoint(folder, config, args.device, args.precision, args.seed)
        tokenizer = Tokenizer(folder)
        prompts = make_prompts(tokenizer, words, n_prompts=max(256, 4 * max(clients)), length=args.prompt_tokens, seed=args.seed,
                               shared=args.shared_prefix)
        print(f"checkpoint {folder} written in {time.perf_counter() - start:.1f} s; {len(words)} word tokens", file=sys.stderr, flush=True)
        cases = serve_cases(folder, work, tokenizer, prompts, args, max_batch_size, clients, "batched")
        if not args.no_baseline:
            cases += serve_cases(folder, work, tokenizer, prompts, args, 1, [max(clients)], "one_at_a_time")
            for mode in args.modes:
                batched = next(c for c in cases if c["server"] == "batched" and c["mode"] == mode and c["clients"] == max(clients))
                single = next(c for c in cases if c["server"] == "one_at_a_time" and c["mode"] == mode)
                if batched.get("tokens_per_s") and single.get("tokens_per_s"):
                    ratio = batched["tokens_per_s"] / single["tokens_per_s"]
                    emit(dict(bench="serve_speedup", model=config.name, device=args.device, mode=mode, clients=max(clients),
                              batched_max_batch_size=batched["max_batch_size"], batched_tokens_per_s=batched["tokens_per_s"],
                              one_at_a_time_tokens_per_s=single["tokens_per_s"], ratio=round(ratio, 2)))
                    print(f"{mode}: batched / one at a time at {max(clients)} clients: {ratio:.2f}x generated tokens/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.checkpoint_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    table(cases, ["server", "mode", "max_batch_size", "clients", "requests", "tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "p50_ms",
                  "p99_ms", "errors", "retries_503", "exact"])


if __name__ == "__main__":
    main()
