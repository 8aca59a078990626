"""Launch real `MultiWorkerMirroredStrategy` workers on localhost for tests: free ports, TF_CONFIG,
one log file and one private TMPDIR per worker, and a clean-up that never leaves a process behind.

A worker whose peer died can hang forever inside a collective, so every wait has a timeout and
`Cluster.__exit__` SIGKILLs whatever is still running (by pid, only the processes it started).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(n: int) -> List[int]:
    """`n` distinct free TCP ports on localhost (every socket held open until all are known)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("localhost", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: Sequence[int], index: int) -> str:
    """TF_CONFIG of worker `index` in a cluster of `len(ports)` workers (worker 0 is the chief)."""
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


class WorkerFailed(AssertionError):
    """A worker exited non-zero or ran past its timeout; the message holds the log tails."""


class Cluster:
    """`num_workers` processes running `argv` (a list, or a callable index -> list) with TF_CONFIG.

        with Cluster(argv, tmp_path / "logs") as c:
            c.wait(timeout=300)        # raises WorkerFailed on a non-zero exit or a timeout
    """

    def __init__(self, argv, work_dir, num_workers: int = 2, env: Optional[dict] = None,
                 trace: Sequence[int] = ()):
        self.argv = argv
        self.trace = set(trace)  # worker indices run under strace (file-changing syscalls)
        self.traces: dict = {}
        self.work_dir = str(work_dir)
        self.num_workers = num_workers
        self.extra_env = dict(env or {})
        self.procs: List[subprocess.Popen] = []
        self.logs: List[str] = []
        self.tmpdirs: List[str] = []

    def start(self) -> "Cluster":
        ports = free_ports(self.num_workers)
        os.makedirs(self.work_dir, exist_ok=True)
        for i in range(self.num_workers):
            tmp = os.path.join(self.work_dir, f"tmp{i}")
            os.makedirs(tmp, exist_ok=True)
            env = dict(os.environ, TF_CONFIG=tf_config(ports, i), TMPDIR=tmp,
                       TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=REPO)
            env.update(self.extra_env)
            argv = self.argv(i) if callable(self.argv) else self.argv
            if i in self.trace:
                self.traces[i] = os.path.join(self.work_dir, f"worker{i}.strace")
                argv = ["strace", "-f", "-qq", "--seccomp-bpf", "-e", f"trace={WRITE_CALLS}",
                        "-o", self.traces[i]] + list(argv)
            log = os.path.join(self.work_dir, f"worker{i}.log")
            with open(log, "ab") as f:
                self.procs.append(subprocess.Popen([str(a) for a in argv], cwd=REPO, env=env,
                                                   stdout=f, stderr=subprocess.STDOUT))
            self.logs.append(log)
            self.tmpdirs.append(tmp)
        return self

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.kill()
        return False

    def tail(self, i: int, chars: int = 3000) -> str:
        with open(self.logs[i], errors="replace") as f:
            return f.read()[-chars:]

    def wait(self, timeout: float) -> List[int]:
        """Wait for every worker; raise WorkerFailed (with logs) on a non-zero exit or timeout."""
        deadline = time.time() + timeout
        codes = []
        for i, p in enumerate(self.procs):
            try:
                codes.append(p.wait(timeout=max(deadline - time.time(), 0.1)))
            except subprocess.TimeoutExpired:
                self.kill()
                raise WorkerFailed(f"worker {i} still running after {timeout:.0f}s; logs:\n"
                                   + self.all_tails())
        if any(codes):
            raise WorkerFailed(f"exit codes {codes}; logs:\n" + self.all_tails())
        return codes

    def all_tails(self) -> str:
        return "\n".join(f"--- worker {i}\n{self.tail(i)}" for i in range(len(self.procs)))

    def kill(self, index: Optional[int] = None) -> None:
        """SIGKILL worker `index` (or every worker still running) and reap it."""
        targets = self.procs if index is None else [self.procs[index]]
        for p in targets:
            for child in _descendants(p.pid):  # the traced program under strace
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass


def _descendants(pid: int) -> List[int]:
    """Every descendant pid of `pid` (from /proc; empty when it has exited)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


# Syscalls that create, change or remove files, traced by `Cluster(trace=...)`.
WRITE_CALLS = ("open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,rmdir,"
               "truncate,link,linkat,symlink,symlinkat")
_OPEN_WRITE = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND")


def writes_under(trace_file: str, folder: str) -> List[str]:
    """strace lines (from `Cluster(trace=...)`) that created, changed or removed something under
    `folder`: opens for writing and every successful mkdir/rename/unlink/link there."""
    folder = os.path.realpath(str(folder))
    found = []
    with open(trace_file, errors="replace") as f:
        for line in f:
            if f'"{folder}' not in line:
                continue
            call = line.split(None, 1)[1] if " " in line else line
            if call.startswith(("open(", "openat(")):
                if _OPEN_WRITE.search(call):
                    found.append(line.strip())
            elif " = -1 " not in call:
                found.append(line.strip())
    return found


def python(*args) -> List[str]:
    """argv of `python <args>` with this interpreter."""
    return [sys.executable, *map(str, args)]


def wait_for(predicate, timeout: float, procs: Sequence[subprocess.Popen] = (),
             what: str = "condition") -> None:
    """Poll `predicate` every 50 ms; fail when `timeout` passes or a process in `procs` exits."""
    deadline = time.time() + timeout
    while not predicate():
        if any(p.poll() is not None for p in procs):
            raise WorkerFailed(f"a worker exited before {what}")
        if time.time() > deadline:
            raise WorkerFailed(f"no {what} after {timeout:.0f}s")
        time.sleep(0.05)
