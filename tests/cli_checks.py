"""What the tests of hostile or damaged inputs share: the real CLI in a subprocess, its one-line error, and a
pickle payload that would leave a marker file if anything unpickled it."""

import subprocess
import sys


def litgpt(*args: str, preexec_fn=None, timeout: float = 300, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "litgpt", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, preexec_fn=preexec_fn, env=env)


def one_line_error(result: subprocess.CompletedProcess, match: str) -> str:
    """The one `error:` line of a failed command (no traceback), which must contain `match`."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and match in errors[0], result.stderr[-2000:]
    return errors[0]


class WritesMarker:
    """Unpickled, it opens (creates) the file at `path`: proof that a pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))
