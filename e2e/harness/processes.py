"""Child processes that cannot outlive the harness.

Every component is started in its own process group, with its output in a log
file of its own. Three layers make sure nothing is left behind:

1. ``ManagedProcess.stop()`` sends SIGTERM to the whole group, then SIGKILL
   after a grace period; fixtures call it in their teardown.
2. ``atexit`` stops whatever is still running when the interpreter exits
   normally or through an unhandled signal turned into ``SystemExit``.
3. When the harness owns the children (tests, the demo), each child asks the
   kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), which also
   covers a ``kill -9`` of pytest, where no Python code runs at all. The kernel
   means the parent *thread*: a child forked by a thread that then ends is
   killed with it. So every such child is forked by one spawner thread that
   lives as long as the interpreter (the main thread's children are forked by
   it directly, as it also lives that long). Before, a model server started by
   the revision servers' sync thread died when that thread died, and a
   kube-apiserver restarted by the chaos thread when the chaos run ended.

A detached cluster (``make cluster-up``) skips layer 3 on purpose, records its
process ids in a state file, and ``make cluster-down`` stops them.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 60

_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


class StartupError(RuntimeError):
    """A component did not become ready; the message carries its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Looked up once in the parent: the child, between fork and exec, should do as
# little as possible (no dlopen, no imports) in case another thread held a lock.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# Its one worker never idles out; it ends only when the interpreter does.
_spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="spawner")


def _popen_dying_with_us(argv: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
    """``Popen`` with ``PR_SET_PDEATHSIG``, forked by a thread that outlives every other."""

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, preexec_fn=_die_with_parent, **options)  # noqa: PLW1509

    if threading.current_thread() is threading.main_thread():
        return popen()
    return _spawner.submit(popen).result()


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One long-running component with its own log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = env
        self._cwd = cwd
        self._die_with_parent = die_with_parent
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self._popen.pid

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        options: dict[str, Any] = {
            "stdin": subprocess.DEVNULL,
            "stdout": self._log,
            "stderr": subprocess.STDOUT,
            "env": self._env,
            "cwd": self._cwd,
            "start_new_session": True,
        }
        if self._die_with_parent:
            self._popen = _popen_dying_with_us(self.argv, **options)
        else:
            self._popen = subprocess.Popen(self.argv, **options)
        if self._die_with_parent:
            # A detached component belongs to a state file, not to this interpreter.
            with _live_lock:
                _live.add(self)
        return self

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait_ready(
        self, probe: Callable[[], bool], *, timeout: float, interval: float = 0.1
    ) -> None:
        """Poll ``probe`` until it returns True; fail fast if the process exits."""
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if not self.is_running():
                code = self._popen.returncode if self._popen else None
                raise StartupError(self._failure(f"exited with code {code} before it was ready"))
            try:
                if probe():
                    return
            except Exception as error:
                last_error = error
            time.sleep(interval)
        detail = f" (last probe error: {last_error!r})" if last_error else ""
        raise StartupError(self._failure(f"was not ready within {timeout:.0f}s{detail}"))

    def _failure(self, what: str) -> str:
        return (
            f"{self.name} {what}\n"
            f"command: {' '.join(self.argv)}\n"
            f"log: {self.log_path}\n"
            f"----- last lines of {self.name}'s log -----\n{log_tail(self.log_path)}"
        )

    def stop(self, grace: float = 10.0) -> None:
        popen = self._popen
        if popen is not None and popen.poll() is None:
            terminate_group(popen.pid, grace=grace, wait=popen.wait)
        if self._log is not None:
            self._log.close()
            self._log = None
        with _live_lock:
            _live.discard(self)


def terminate_group(
    pid: int, *, grace: float, wait: Callable[[float], object] | None = None
) -> None:
    """SIGTERM a process group, then SIGKILL it if it is still there after ``grace``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if wait is not None:
        try:
            wait(grace)
        except subprocess.TimeoutExpired:
            pass
        else:
            _kill_group(pid)  # children that ignored the leader's exit
            return
    else:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.1)
    _kill_group(pid)
    if wait is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            wait(5.0)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_all() -> None:
    """Stop every process this interpreter started and has not stopped yet."""
    with _live_lock:
        running = list(_live)
    for process in reversed(running):
        process.stop(grace=5.0)


atexit.register(stop_all)
