"""Run the ``modelcanary`` command as a user would: a fresh process, a bare environment.

The environment holds no KUBECONFIG and no HOME, so a test says exactly which
credentials the command gets (or that it gets none). Its stdout is a pipe, not
a terminal, so the command prints its plain (no ANSI) output.
"""

from __future__ import annotations

import codecs
import os
import pty
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


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class RunningCommand:
    """A long-running command (``status --watch``) whose output a test reads as it comes.

    A thread drains stdout into a queue, so a test waits for some text with a
    deadline instead of blocking on a pipe or sleeping. With ``terminal=True``
    stdout is a pseudo-terminal, so the command sees a TTY as a person's shell
    would give it.
    """

    def __init__(self, *args: str, kubeconfig: Path | None = None, terminal: bool = False) -> None:
        env = _env()
        if terminal:
            self._output, child_output = pty.openpty()
            env["TERM"] = "xterm-256color"
        else:
            self._output, child_output = os.pipe()
        self.process = subprocess.Popen(
            _command(args, kubeconfig),
            cwd=REPO,
            stdout=child_output,
            stderr=subprocess.PIPE,
            env=env,
            # A shell starts background jobs (`make test &`, nohup) with SIGINT
            # ignored, and an ignored signal stays ignored across exec: the
            # command must get Ctrl-C as it would from a person's terminal.
            preexec_fn=_default_sigint,  # noqa: PLW1509
        )
        os.close(child_output)
        self._chunks: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            try:
                chunk = os.read(self._output, 65536)
            except OSError:  # a pty reads EIO once the child is gone
                chunk = b""
            if not chunk:
                break
            self._chunks.put(decoder.decode(chunk))
        self._chunks.put(None)

    def read_until(self, wanted: str, timeout: float) -> str:
        """Everything printed until ``wanted`` shows up; fails at the deadline."""
        deadline = time.monotonic() + timeout
        seen = ""
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                chunk = self._chunks.get(timeout=remaining)
            except queue.Empty:
                break
            if chunk is None:
                break
            seen += chunk
            if wanted in seen:
                return seen
        raise AssertionError(
            f"no {wanted!r} within {timeout}s; got:\n{seen}\nexit code: {self.process.poll()}"
        )

    def interrupt(self, timeout: float = 10) -> tuple[int, str]:
        """Ctrl-C, as a person ends ``--watch``: (exit code, stderr)."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=timeout)
        assert self.process.stderr is not None
        return code, self.process.stderr.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        # The reader ends at EOF; closing the descriptor under it could hand
        # its number to another file mid-read.
        self._reader.join(timeout=10)
        os.close(self._output)
        if self.process.stderr is not None:
            self.process.stderr.close()
