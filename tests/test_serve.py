"""`litgpt serve`: real servers on 127.0.0.1 answer as the generation core does, alone or many at once."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from generate.tiny import checkpoint, one_thread  # noqa: F401 (an autouse fixture)

import litgpt
from litgpt.api import LLM

PROMPTS = ["What food do llamas eat?", "Hi", "Tokens stream one at a time; the reply is printed piece by piece.", "Hello there"]
# the CLI with `serve` in its table, whether or not __main__.py lists it yet
CLI = "from litgpt.__main__ import COMMANDS, main; COMMANDS.setdefault('serve', 'litgpt.serve:serve'); main()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(checkpoint_dir, tmp_path, *args):
    """`litgpt serve checkpoint_dir *args` on a free port of 127.0.0.1; yields its base URL, then stops it."""
    port = free_port()
    log = open(tmp_path / f"server-{port}.log", "w+")
    env = {**os.environ, "PYTHONPATH": str(Path(litgpt.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "serve", str(checkpoint_dir), "--port", str(port), "--accelerator", "cpu", *args],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"the server exited:\n{_read(log)}"
            assert time.monotonic() < deadline, f"the server did not start:\n{_read(log)}"
            try:
                if requests.get(f"{url}/health", timeout=1).status_code in (200, 401):
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        _signal_group(process.pid, signal.SIGTERM)  # the server and the worker processes it started
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
        log.close()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:  # already gone
        pass


def _read(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-5000:]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return checkpoint(tmp_path_factory, "tiny-random-llama", "llama")


@pytest.fixture(scope="module")
def llm(llama_dir):
    return LLM.load(llama_dir, accelerator="cpu")


@pytest.fixture(scope="module")
def server(llama_dir, tmp_path_factory):
    with running_server(llama_dir, tmp_path_factory.mktemp("serve"), "--max_batch_size", "4") as url:
        yield url


def predict(url, **body):
    return requests.post(f"{url}/predict", json=body, timeout=60)


def test_predict_equals_greedy_generation(server, llm):
    response = predict(server, prompt=PROMPTS[0], temperature=0)
    assert response.status_code == 200
    assert response.json() == {"output": llm.generate(PROMPTS[0], max_new_tokens=50, temperature=0.0)}


def test_per_request_settings(server, llm):
    output = predict(server, prompt=PROMPTS[3], max_new_tokens=5, top_k=1).json()["output"]  # top_k=1 is greedy too
    assert output == llm.generate(PROMPTS[3], max_new_tokens=5, temperature=0.0)
    longer = llm.generate(PROMPTS[3], max_new_tokens=50, temperature=0.0)
    assert longer.startswith(output) and len(longer) > len(output)
    # the server's default temperature (0.8) samples; a high one makes different replies likely
    replies = {predict(server, prompt=PROMPTS[3], max_new_tokens=20, temperature=2.0, top_k=None).json()["output"] for _ in range(3)}
    assert len(replies) > 1


def test_concurrent_requests_answer_as_alone(server, llm):
    jobs = [(prompt, n) for n in (6, 17, 11, 3, 9, 14, 8, 20) for prompt in PROMPTS]  # 32 requests at once
    expected = [llm.generate(prompt, max_new_tokens=n, temperature=0.0) for prompt, n in jobs]
    start = time.perf_counter()
    with ThreadPoolExecutor(len(jobs)) as pool:
        responses = list(pool.map(lambda job: predict(server, prompt=job[0], max_new_tokens=job[1], temperature=0), jobs))
    print(f"{len(jobs)} concurrent requests answered in {time.perf_counter() - start:.2f} s")
    assert [r.status_code for r in responses] == [200] * len(jobs)
    assert [r.json()["output"] for r in responses] == expected


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "'prompt' must be given"),
        ({"prompt": 3}, "'prompt' must be a string, got int"),
        ({"prompt": "Hi", "max_new_tokens": -1}, "'max_new_tokens' must be an integer of at least 0"),
        ({"prompt": "Hi", "max_new_tokens": 10**30}, "'max_new_tokens' must be an integer of at least 0"),
        ({"prompt": "Hi", "max_new_tokens": "10"}, "'max_new_tokens' must be an integer"),
        ({"prompt": "Hi", "max_new_tokens": 10**9}, "plus max_new_tokens (1000000000) exceeds the served context length (2048 tokens)"),
        ({"prompt": "Hi " * 3000}, "does not fit the served context (2048 tokens)"),
        ({"prompt": "Hi", "temperature": -1}, "'temperature' must be a finite number in [0, 100], got -1"),
        ({"prompt": "Hi", "temperature": float("nan")}, "'temperature' must be a finite number in [0, 100], got nan"),
        ({"prompt": "Hi", "temperature": float("inf")}, "'temperature' must be a finite number in [0, 100], got inf"),
        ({"prompt": "Hi", "temperature": 101}, "'temperature' must be a finite number in [0, 100], got 101"),
        ({"prompt": "Hi", "temperature": "hot"}, "'temperature' must be a finite number"),
        ({"prompt": "Hi", "top_p": 1.5}, "'top_p' must be a finite number in (0, 1], got 1.5"),
        ({"prompt": "Hi", "top_p": 0}, "'top_p' must be a finite number in (0, 1], got 0"),
        ({"prompt": "Hi", "top_k": 0}, "'top_k' must be an integer of at least 1 or null, got 0"),
        ({"prompt": "Hi", "top_k": True}, "'top_k' must be an integer of at least 1 or null, got True"),
        ({"prompt": "Hi", "seed": -1}, "'seed' must be an integer of at least 0 or null, got -1"),
        ({"prompt": "Hi \ud800"}, "'prompt' is not valid Unicode (it holds a lone surrogate)"),
        ({"prompt": "Hi", "max_tokens": 10}, "Unknown field(s) max_tokens"),
        (["Hi"], "must be a JSON object"),
    ],
)
def test_bad_requests_are_4xx_and_the_server_keeps_serving(server, body, message):
    data = json.dumps(body)  # NaN and Infinity as Python writes them; a lone surrogate as the escape \ud800
    response = requests.post(f"{server}/predict", data=data, headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert predict(server, prompt="Hi", max_new_tokens=2).status_code == 200


def test_not_json_is_4xx(server):
    response = requests.post(f"{server}/predict", data="prompt=Hi", timeout=30)
    assert response.status_code == 415 and "application/json" in response.json()["detail"]
    for data, message in ((b"{not json", "The request body must be JSON"), (b'{"prompt": "\xff"}', "not valid UTF-8")):
        response = requests.post(f"{server}/predict", data=data, headers={"Content-Type": "application/json"}, timeout=30)
        assert response.status_code == 400 and message in response.json()["detail"]
    assert predict(server, prompt="Hi", max_new_tokens=2).status_code == 200


@pytest.fixture(scope="module")
def stream_server(llama_dir, tmp_path_factory):
    with running_server(llama_dir, tmp_path_factory.mktemp("serve"), "--stream", "true", "--api_key", "sesame") as url:
        yield url


def test_streaming_with_api_key(stream_server, llm):
    key = {"Authorization": "Bearer sesame"}
    with requests.post(f"{stream_server}/predict", json={"prompt": PROMPTS[0], "temperature": 0}, headers=key, stream=True, timeout=60) as response:
        assert response.status_code == 200
        pieces = [json.loads(line)["output"] for line in response.iter_lines() if line]
    assert len(pieces) > 1
    assert "".join(pieces) == llm.generate(PROMPTS[0], max_new_tokens=50, temperature=0.0)
    # a bad streaming request is refused before the stream starts
    response = requests.post(f"{stream_server}/predict", json={"prompt": "Hi", "max_new_tokens": -1}, headers=key, timeout=30)
    assert response.status_code == 400
    # no tokens asked for: an empty reply
    response = requests.post(f"{stream_server}/predict", json={"prompt": "Hi", "max_new_tokens": 0}, headers=key, timeout=30)
    assert response.status_code == 200 and response.text == ""


def test_api_key_is_required(stream_server):
    body = {"prompt": "Hi", "max_new_tokens": 2}
    assert requests.post(f"{stream_server}/predict", json=body, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer open"}
    response = requests.post(f"{stream_server}/predict", json=body, headers=wrong, timeout=30)
    assert response.status_code == 401 and "API key" in response.json()["detail"]
    assert requests.get(f"{stream_server}/health", timeout=30).status_code == 200  # open to load balancers
    assert requests.get(f"{stream_server}/info", timeout=30).status_code == 401
    right = {"Authorization": "Bearer sesame"}
    assert requests.post(f"{stream_server}/predict", json=body, headers=right, timeout=30).status_code == 200


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    return checkpoint(tmp_path_factory, "tiny-random-llama-chat", "llama", chat_template=True)


@pytest.fixture(scope="module")
def openai_server(chat_dir, tmp_path_factory):
    with running_server(chat_dir, tmp_path_factory.mktemp("serve"), "--openai_spec", "true", "--max_batch_size", "2") as url:
        yield url


def test_openai_client(openai_server, chat_dir):
    import openai

    llm = LLM.load(chat_dir, accelerator="cpu")
    client = openai.OpenAI(base_url=f"{openai_server}/v1", api_key="not-needed")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPTS[0]}]
    expected = llm.generate(PROMPTS[0], sys_prompt="Be brief.", max_new_tokens=12, temperature=0.0)

    reply = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_completion_tokens=12)
    assert reply.choices[0].message.content == expected

    chunks = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=12, stream=True)
    pieces = [chunk.choices[0].delta.content or "" for chunk in chunks]
    assert sum(1 for p in pieces if p) > 1 and "".join(pieces) == expected

    # a stop string ends the reply before it
    stop = expected[4:6]
    reply = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=12, stop=[stop])
    assert reply.choices[0].message.content == expected[: expected.index(stop)]

    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="tiny", messages=messages, max_completion_tokens=10**6)
    assert "exceeds the served context length" in error.value.message and error.value.param == "max_completion_tokens"


def test_openai_finish_reason_usage_and_limits(openai_server, chat_dir):
    import openai

    llm = LLM.load(chat_dir, accelerator="cpu")
    client = openai.OpenAI(base_url=f"{openai_server}/v1", api_key="not-needed")
    messages = [{"role": "user", "content": "hay"}]
    prompt_tokens = len(llm.tokenizer.encode(llm.prompt_style.apply(messages)))
    ids = llm.generate("hay", max_new_tokens=200, temperature=0.0, return_as_token_ids=True)
    full, n_full = llm.tokenizer.decode(ids), len(ids)
    assert n_full < 200  # the tiny model reaches EOS

    reply = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=3)
    assert reply.choices[0].finish_reason == "length"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (prompt_tokens, 3, prompt_tokens + 3)
    reply = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=200)
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.content == full  # EOS ended it
    assert reply.usage.completion_tokens == n_full
    stop = full[4:6]
    reply = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=200, stop=stop)
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.content == full[: full.index(stop)]
    # max_tokens 0: no tokens, not the default
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=0)
    assert reply.choices[0].message.content == "" and reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 0 and reply.usage.prompt_tokens == prompt_tokens

    chunks = list(client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=5, stream=True,
                                                 stream_options={"include_usage": True}))
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5 and chunks[-1].usage.prompt_tokens == prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])

    assert [m.id for m in client.models.list().data] == [chat_dir.name]
    assert requests.get(f"{openai_server}/health", timeout=30).text == "ok"

    for kwargs, param in (
        (dict(n=2), "n"),
        (dict(temperature=-0.5), "temperature"),
        (dict(top_p=0), "top_p"),
        (dict(max_tokens=-1), "max_tokens"),
        (dict(messages=[{"role": "robot", "content": "Hi"}]), "messages[0]"),
        (dict(frequency_penalty=1.0), "frequency_penalty"),
    ):
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(**{"model": "tiny", "messages": messages, **kwargs})
        assert error.value.param == param, error.value.message
    # what the client will not send: numbers out of JSON's range
    for body, param in (('{"messages": [{"role": "user", "content": "Hi"}], "temperature": 1e999}', "temperature"),
                        ('{"messages": [{"role": "user", "content": "Hi \\ud800"}]}', "messages[0].content")):
        response = requests.post(f"{openai_server}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}, timeout=30)
        assert response.status_code == 400 and response.json()["error"]["param"] == param


@pytest.fixture(scope="module")
def raising_chat_dir(tmp_path_factory, chat_dir):
    """The chat checkpoint with a template that refuses a conversation not starting with a user message."""
    folder = tmp_path_factory.mktemp("raising") / "raising-chat"
    shutil.copytree(chat_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with a user message') }}{% endif %}" + config["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def test_chat_template_exception_is_400(raising_chat_dir, tmp_path):
    import openai

    with running_server(raising_chat_dir, tmp_path, "--openai_spec", "true") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="not-needed")
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(model="tiny", messages=[{"role": "assistant", "content": "Hi"}])
        assert "Conversations must start with a user message" in error.value.message and error.value.param == "messages"
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        assert reply.choices[0].finish_reason in ("stop", "length")


def test_requests_sharing_a_long_system_prompt_answer_as_alone(openai_server, chat_dir):
    """Eight chat requests at once with one long system prompt: those that join while others run copy its keys and
    values (prefix reuse) and still answer as each does alone, greedy and seeded."""
    import openai

    system = "You are a terse assistant for llama farmers. " * 12  # well over 64 tokens
    llm = LLM.load(chat_dir, accelerator="cpu")
    client = openai.OpenAI(base_url=f"{openai_server}/v1", api_key="not-needed")
    jobs = [(prompt, seed) for prompt in PROMPTS for seed in (None, 3)]

    def ask(job):
        prompt, seed = job
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        sampling = dict(temperature=0) if seed is None else dict(temperature=1.0, seed=seed)
        return client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, **sampling).choices[0].message.content

    alone = [ask(job) for job in jobs]
    assert alone[::2] == [llm.generate(p, sys_prompt=system, max_new_tokens=10, temperature=0.0) for p in PROMPTS]
    with ThreadPoolExecutor(len(jobs)) as pool:
        assert list(pool.map(ask, jobs)) == alone


def test_a_bad_request_among_good_ones_changes_nothing(server, stream_server, llm):
    """Three good requests (greedy, seeded, streamed) and a bad one at once: the good replies are those made alone."""
    key = {"Authorization": "Bearer sesame"}
    seeded = dict(prompt=PROMPTS[2], max_new_tokens=20, temperature=1.5, top_k=None, seed=7)
    alone_seeded = predict(server, **seeded).json()["output"]
    greedy = llm.generate(PROMPTS[0], max_new_tokens=20, temperature=0.0)
    streamed = llm.generate(PROMPTS[3], max_new_tokens=20, temperature=0.0)

    def stream() -> str:
        body = {"prompt": PROMPTS[3], "max_new_tokens": 20, "temperature": 0}
        with requests.post(f"{stream_server}/predict", json=body, headers=key, stream=True, timeout=60) as response:
            assert response.status_code == 200
            return "".join(json.loads(line)["output"] for line in response.iter_lines() if line)

    for bad in ('"temperature": NaN', '"temperature": 1e999', '"top_p": 0', '"top_k": -3', '"max_new_tokens": 99999'):
        raw = '{"prompt": "Hi", ' + bad + "}"
        with ThreadPoolExecutor(4) as pool:
            jobs = [
                pool.submit(predict, server, prompt=PROMPTS[0], max_new_tokens=20, temperature=0),
                pool.submit(predict, server, **seeded),
                pool.submit(stream),
                pool.submit(requests.post, f"{server}/predict", data=raw, headers={"Content-Type": "application/json"}, timeout=60),
            ]
            first, second, third, refused = [job.result() for job in jobs]
        assert refused.status_code == 400, raw
        assert (first.json()["output"], second.json()["output"], third) == (greedy, alone_seeded, streamed), raw
    # a vanishing temperature samples as greedy, harming no one
    assert predict(server, prompt=PROMPTS[0], max_new_tokens=20, temperature=1e-40).json()["output"] == greedy


def test_body_limit_before_parsing(server):
    big = b'{"prompt": "' + b"a" * (10 * 2**20) + b'"}'
    with ThreadPoolExecutor(2) as pool:
        sent = pool.submit(requests.post, f"{server}/predict", data=big, headers={"Content-Type": "application/json"}, timeout=60)
        start = time.perf_counter()
        assert requests.get(f"{server}/health", timeout=30).status_code == 200
        assert time.perf_counter() - start < 1.0  # the event loop is not busy with the body
        response = sent.result()
    assert response.status_code == 413 and "--max_body_bytes" in response.json()["detail"]
    chunked = (big[i : i + 2**20] for i in range(0, len(big), 2**20))  # no Content-Length: counted while read
    response = requests.post(f"{server}/predict", data=chunked, headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 413
    assert predict(server, prompt="Hi", max_new_tokens=2).status_code == 200


@pytest.fixture(scope="module")
def endless_dir(llama_dir, tmp_path_factory):
    """The tiny checkpoint without an EOS token: every reply runs to max_new_tokens."""
    folder = tmp_path_factory.mktemp("endless") / "endless"
    shutil.copytree(llama_dir, folder)
    for name, key in (("tokenizer_config.json", "eos_token"), ("generation_config.json", "eos_token_id"), ("config.json", "eos_token_id")):
        config = json.loads((folder / name).read_text())
        config.pop(key, None)
        (folder / name).write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def one_row_server(endless_dir, tmp_path_factory):
    with running_server(endless_dir, tmp_path_factory.mktemp("serve"), "--max_batch_size", "1", "--max_queue", "1", "--timeout", "1") as url:
        yield url


@pytest.fixture(scope="module")
def one_row_stream_server(endless_dir, tmp_path_factory):
    with running_server(endless_dir, tmp_path_factory.mktemp("serve"), "--max_batch_size", "1", "--stream", "true") as url:
        yield url


LONG = dict(prompt="Hi", max_new_tokens=2000, temperature=0)


def _timed(url, **body):
    start = time.perf_counter()
    response = predict(url, **body)
    assert response.status_code == 200, response.text
    return time.perf_counter() - start


def test_queue_bound_and_timeout(one_row_server):
    """One row and one queue place: a third request at once is 503 with Retry-After; the second, waiting longer than
    --timeout (1 s) for its first token (the long first one holds the row for longer), is 504; both give their places
    back."""
    with ThreadPoolExecutor(2) as pool:
        started = time.perf_counter()
        first = pool.submit(predict, one_row_server, **{**LONG, "temperature": 1.0})  # sampling: slower steps
        time.sleep(0.1)
        second = pool.submit(predict, one_row_server, prompt="Hi", max_new_tokens=2, temperature=0)
        queued = time.perf_counter() - started
        time.sleep(0.1)
        third = predict(one_row_server, prompt="Hi", max_new_tokens=2)
        assert third.status_code == 503 and third.headers["Retry-After"] == "1" and "busy" in third.json()["detail"]
        assert first.result().status_code == 200
        took = time.perf_counter() - started
        if took > queued + 1.1:  # the first held the row until after the second's timeout
            assert second.result().status_code == 504 and "timeout" in second.result().json()["detail"]
    assert predict(one_row_server, prompt="Hi", max_new_tokens=2).status_code == 200
    if took <= queued + 1.1:
        pytest.skip(f"the long request took {took:.2f} s, too little to check the timeout")


def _leave_early(url: str, body: dict) -> None:
    """Send `body` to url's /predict on a raw connection and close it 0.3 s later, without reading the reply."""
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
        time.sleep(0.3)


@pytest.mark.parametrize("streamed", [False, True])
def test_a_client_that_goes_away_frees_its_row(one_row_server, one_row_stream_server, streamed):
    """A long request on the only row, its client gone after 0.3 s: the next request is answered at once."""
    url = one_row_stream_server if streamed else one_row_server
    alone = _timed(url, **LONG)
    _leave_early(url, LONG)
    assert _timed(url, prompt="Hi", max_new_tokens=2) < 0.4 * alone, f"alone: {alone:.2f} s"


def test_streamed_tokens_arrive_while_the_reply_is_generated(one_row_stream_server):
    """A 2000-token streamed reply: its first piece comes long before its last (a busy server may merge a few steps
    into one event, never hold a reply back until it is whole)."""
    start = time.perf_counter()
    arrivals, pieces = [], []
    with requests.post(f"{one_row_stream_server}/predict", json=LONG, stream=True, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line:
                arrivals.append(time.perf_counter() - start)
                pieces.append(json.loads(line)["output"])
    total = arrivals[-1]
    assert len(pieces) > 100 and arrivals[0] < 0.25 * total, f"first piece at {arrivals[0]:.2f} s of {total:.2f} s"


def test_a_busy_server_paces_each_stream_while_one_alone_gets_every_step(endless_dir, tmp_path):
    """Twelve replies streamed at once (more than BUSY_STREAMS): each gets an event per STREAM_INTERVAL_S at most,
    not one per step, while a reply streamed alone gets one per step (or per few when the event loop is behind)."""
    from litgpt.serve_api import STREAM_INTERVAL_S

    def stream(url, n):
        arrivals = []
        with requests.post(f"{url}/predict", json=dict(prompt="Hi", max_new_tokens=n, temperature=0), stream=True, timeout=120) as response:
            for line in response.iter_lines():
                if line:
                    arrivals.append(time.perf_counter())
        return len(arrivals), arrivals[-1] - arrivals[0]

    with running_server(endless_dir, tmp_path, "--max_batch_size", "12", "--stream", "true") as url:
        alone, _ = stream(url, 1200)
        with ThreadPoolExecutor(12) as pool:
            busy = list(pool.map(lambda _: stream(url, 1200), range(12)))
    assert alone >= 1200 / 4  # MERGED_STEPS
    # paced while 9 or more stream; the first and last few stream alone a little while (unpaced: about 660 events)
    events, span = sorted(busy)[len(busy) // 2]
    assert events <= span / STREAM_INTERVAL_S + 30 and events < 0.5 * alone, (alone, busy)


@pytest.mark.parametrize("sig, group", [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)])
def test_shutdown_finishes_in_flight_requests_and_leaves_nothing(endless_dir, tmp_path, llm, sig, group):
    """From a parent process: the signal stops the server, the request in flight is answered in full, no process
    of the server's session survives and the port can be bound again. `group`: sent to the server's whole process
    group, its token loop's process too, as Ctrl+C in a terminal does."""
    with running_server(endless_dir, tmp_path, "--grace_period", "20") as url:
        port = int(url.rsplit(":", 1)[1])
        pid = _server_pid(port)
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(predict, url, prompt="Hi", max_new_tokens=1500, temperature=0)
            time.sleep(0.5)
            (os.killpg if group else os.kill)(pid, sig)
            response = in_flight.result()
        assert response.status_code == 200
        assert response.json()["output"] == LLM.load(endless_dir, accelerator="cpu").generate("Hi", max_new_tokens=1500, temperature=0.0)
        deadline = time.monotonic() + 20
        while _session(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _session(pid), f"processes of the server's session survive: {_session(pid)}"
        with socket.socket() as s:  # as a new server binds it: connections the server closed may linger in TIME_WAIT
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()


def test_a_token_loop_process_killed_stops_the_server_with_an_error(endless_dir, tmp_path):
    """The token loop's process killed (as the kernel's out-of-memory killer would): the request in flight fails, and
    the server stops with one line saying why, leaving no process."""
    with running_server(endless_dir, tmp_path) as url:
        port = int(url.rsplit(":", 1)[1])
        pid = _server_pid(port)
        engine = [p for p in _session(pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(engine) == 1, engine  # the token loop runs in a process of its own (beside multiprocessing's tracker)
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(predict, url, prompt="Hi", max_new_tokens=1500, temperature=0)
            time.sleep(0.5)
            os.kill(engine[0], signal.SIGKILL)
            response = in_flight.result()
        assert response.status_code == 500 and "token loop's process ended" in response.text, (response.status_code, response.text)
        deadline = time.monotonic() + 20
        while _session(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _session(pid), f"processes of the server's session survive: {_session(pid)}"
        log = (tmp_path / f"server-{port}.log").read_text()
        assert "litgpt serve: error: The token loop's process ended (exit code -9); stopping the server" in log, log[-2000:]
        assert "Traceback" not in log, log[-3000:]


def test_a_checkpoint_that_fails_to_load_in_the_token_loops_process_is_one_line(llama_dir, tmp_path):
    """The weights load in the token loop's process: what fails there is said by the server in one line, exit 1."""
    broken = tmp_path / "broken"
    shutil.copytree(llama_dir, broken)
    (broken / "lit_model.pth").write_bytes(b"not a checkpoint")
    env = {**os.environ, "PYTHONPATH": str(Path(litgpt.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", CLI, "serve", str(broken), "--port", str(free_port()), "--accelerator", "cpu"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("litgpt serve: error:") and "lit_model.pth" in lines[-1], result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def test_the_token_loop_on_a_thread_of_the_server_answers_the_same(llm, tmp_path, llama_dir):
    """--engine thread: the token loop in the server's own process, no other process; replies as alone."""
    with running_server(llama_dir, tmp_path, "--engine", "thread", "--max_batch_size", "4") as url:
        pid = _server_pid(int(url.rsplit(":", 1)[1]))
        assert _session(pid) == [pid]  # no token loop's process, nor multiprocessing's tracker
        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            replies = list(pool.map(lambda p: predict(url, prompt=p, max_new_tokens=12, temperature=0).json()["output"], PROMPTS))
    assert replies == [llm.generate(p, max_new_tokens=12, temperature=0.0) for p in PROMPTS]


def _server_pid(port: int) -> int:
    """The pid of the process listening on `port` (the test's server runs `python -c ...` as its session leader)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"--port\x00{port}\x00" in (proc / "cmdline").read_text():
                    return int(proc.name)
            except OSError:
                continue
    raise AssertionError(f"no process serves port {port}")


def _session(sid: int) -> list:
    """The pids of live processes in session `sid` (start_new_session made the server its leader)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # fields: state, ppid, pgrp, session
                pids.append(int(proc.name))
    return pids


def test_a_reply_wanted_whole_wakes_the_event_loop_at_its_start_and_end_only(llama_dir):
    """A busy server's event loop shares the process with the batching thread: a non-streamed reply must not wake
    it at every step (a streamed one does, to send each piece)."""
    import asyncio

    from litgpt.serve_api import Job, Mailbox, Pool, Settings, Worker

    llm = LLM.load(llama_dir, accelerator="cpu")
    worker = Worker(llm, 2)
    ids = llm.tokenizer.encode(PROMPTS[0])
    expected = llm.generate(PROMPTS[0], max_new_tokens=24, temperature=0)

    async def answer(whole: bool) -> tuple:
        pool = Pool([worker], 4, 60)
        posts = []
        post = Mailbox.post

        def counting(self, answer, released, done):  # on the batcher's thread
            posts.append(done)
            post(self, answer, released, done)

        Mailbox.post = counting
        try:
            answer = pool.start(Job(ids, Settings(max_new_tokens=24, temperature=0.0, top_k=None, top_p=1.0)), whole=whole)
            await answer.started()
            text = await answer.text() if whole else "".join([piece async for piece in answer.pieces()])
            answer.close()
        finally:
            Mailbox.post = post
        return text, posts

    text, posts = asyncio.run(answer(whole=True))
    assert text == expected and posts == [False, True]  # its first tokens, then its end
    text, posts = asyncio.run(answer(whole=False))
    assert text == expected and len(posts) >= 12 and posts[-1]  # each step's tokens (the stop watcher may hold some)
    worker.batcher.close()
