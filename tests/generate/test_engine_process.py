"""The token loop in a process of its own (`EngineProcess`): what a Batcher gives in this process, it gives from
there, with requests and cancels coming from several threads at once."""

import threading
import time

import torch

from litgpt.engine.batcher import Batcher, Generation
from litgpt.engine.remote import EngineProcess
from test_batcher import alone  # a prompt's tokens generated in this process, alone


def tiny_engine(checkpoint_dir):  # runs in the engine's process
    from litgpt.api import LLM

    llm = LLM.load(str(checkpoint_dir), accelerator="cpu")
    return Batcher(llm.model, 4, step=llm.decode_step), llm.tokenizer.decode


def test_requests_and_cancels_from_several_threads_finish_as_in_this_process(llama_dir):
    from litgpt.api import LLM

    llm = LLM.load(str(llama_dir), accelerator="cpu")
    prompts = [[0] + [(7 * i + j) % 290 + 2 for j in range(5 + i % 7)] for i in range(40)]
    engine = EngineProcess(tiny_engine, llama_dir)
    try:
        finished = threading.Semaphore(0)
        gens = []
        calls = {}  # how often each generation's on_update ran

        def submit(rows):
            for i in rows:
                seed = None if i % 2 else i  # greedy and seeded rows
                gen = Generation(torch.tensor(prompts[i]), 300 if i % 3 == 0 else 8, temperature=0.0 if seed is None else 1.0, seed=seed)

                def on_update(g, released, i=i):
                    calls[i] = calls.get(i, 0) + 1
                    if g.done:
                        finished.release()

                gen.on_update = on_update
                gens.append((i, gen))
                engine.submit(gen, whole=i % 4 < 2)  # whole: told at its first tokens and at its end only
                if i % 3 == 0:
                    gen.cancel()  # the long ones: cancelled at once, from the submitting thread

        threads = [threading.Thread(target=submit, args=(range(k, 40, 4),)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 120
        for _ in range(40):
            assert finished.acquire(timeout=max(0.1, deadline - time.monotonic())), "not every generation finished"
    finally:
        engine.close()
    assert not engine.process.is_alive()
    for i, gen in sorted(gens, key=lambda pair: pair[0]):
        if i % 3 == 0:
            assert gen.finish_reason == "cancelled" and len(gen.tokens) < 300, (i, gen.finish_reason, len(gen.tokens))
            continue
        assert gen.finish_reason == "length"
        assert calls[i] == 2 if i % 4 < 2 else calls[i] == 8, (i, calls[i])
        sampled = {} if i % 2 else dict(temperature=1.0, generator=torch.Generator().manual_seed(i))
        assert gen.tokens == alone(llm.model, prompts[i], 8, **sampled), i
