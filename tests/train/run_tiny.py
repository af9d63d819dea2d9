"""Runs a tiny pretraining from JSON arguments (see train_helpers.tiny_spec); with "kill_at_step", the process
SIGKILLs itself when it logs that step, as a crash or a preempted job would end."""

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from train_helpers import run_in_process  # noqa: E402


def main() -> None:
    spec = json.loads(sys.argv[1])
    kill_at = spec.pop("kill_at_step", None)
    if spec.pop("slow_commit", False):  # hold each checkpoint in its temporary folder a while, for kills inside a save
        import time

        from litgpt.train import loop

        commit = loop._commit_folder

        def slow_commit(*args):
            print("saving", flush=True)
            time.sleep(0.3)
            return commit(*args)

        loop._commit_folder = slow_commit
    if kill_at is not None:
        from litgpt.train import monitor

        original = monitor.log_line

        def log_line_then_die(metrics, *args):
            if metrics["step"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(metrics, *args)

        monitor.log_line = log_line_then_die
    run_in_process(spec)


if __name__ == "__main__":
    main()
