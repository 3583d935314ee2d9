"""Run the ``modelcanary`` command as a user would: a fresh process, a bare environment.

The environment holds no KUBECONFIG and no HOME, so a test says exactly which
credentials the command gets (or that it gets none). Its stdout is a pipe, not
a terminal, so the command prints its plain (no ANSI) output.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "PYTHONPATH": f"{REPO / 'operator'}:{REPO}",
        "PYTHONUNBUFFERED": "1",
    }


def _command(args: tuple[str, ...], kubeconfig: Path | None) -> list[str]:
    extra = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    return [sys.executable, "-m", "modelcanary", *args, *extra]


def run_modelcanary(
    *args: str, kubeconfig: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(args, kubeconfig),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_env(),
    )


class RunningCommand:
    """A long-running command (``status --watch``) whose output a test reads as it comes.

    A thread drains stdout into a queue, so a test waits for a line with a
    deadline instead of blocking on a pipe or sleeping.
    """

    def __init__(self, *args: str, kubeconfig: Path | None = None) -> None:
        self.process = subprocess.Popen(
            _command(args, kubeconfig),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def read_until(self, wanted: str, timeout: float) -> str:
        """Everything printed up to a line containing ``wanted``; fails at the deadline."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if wanted in line:
                return "".join(seen)
        raise AssertionError(
            f"no line with {wanted!r} within {timeout}s; got:\n{''.join(seen)}"
            f"\nexit code: {self.process.poll()}"
        )

    def interrupt(self, timeout: float = 10) -> tuple[int, str]:
        """Ctrl-C, as a person ends ``--watch``: (exit code, stderr)."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=timeout)
        assert self.process.stderr is not None
        return code, self.process.stderr.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        # The reader ends at EOF; closing the pipe under it would raise in its thread.
        self._reader.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
