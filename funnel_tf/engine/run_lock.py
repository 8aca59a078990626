"""`ModelDirLock`: one run at a time per model_dir, so two runs never interleave checkpoints.

A run holds the lock for its whole life: a file `<model_dir>/RUN_LOCK` that records the holder's
PID, host and start time. A second run is refused (`ModelDirLockedError`, naming the holder). A
lock left behind by a run that died (SIGKILL, OOM) is taken over when the holder ran on this host
and its process is gone; a lock from another host (shared storage) is refused with how to remove it.

Works on local paths and on other filesystems through `tf.io.gfile` (gs://, ram:// in tests).
Local paths get an atomic create (hard link of a fully written file, else O_EXCL); elsewhere there is
no exclusive create, so the lock is written and read back (the last writer of a race wins; the
other sees a different token and backs off).

The holder re-checks the lock before it writes (`verify_held(model_dir)`, called by every
checkpoint save): a lock deleted or replaced under a live run (by hand, or by a second run that then
took the folder) stops this run with RunLockLostError before it writes anything more, and a lock
still ours is refreshed (its `refreshed` time). Locks this process holds are kept in a registry by
model_dir, so the save path needs no lock object passed down.

Multi-worker jobs: only the chief takes the lock (every worker shares the model_dir), so callers pass
`ModelDirLock(model_dir, enabled=is_chief)`. Creating the lock creates model_dir: take it only after
the inputs have been validated (nothing is written before a user error).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
import uuid
from typing import Dict, Optional

from absl import logging

from funnel_tf.errors import UserError

LOCK_NAME = "RUN_LOCK"


class ModelDirLockedError(UserError, RuntimeError):
    """Another run holds (or may hold) the model_dir; the message names it and what to do."""


class RunLockLostError(ModelDirLockedError):
    """The run's own lock was removed or taken by another run while it ran; it stopped before
    writing (another run may be writing the same model_dir)."""


# model_dir (normalised) -> the ModelDirLock this process holds on it
_HELD: Dict[str, "ModelDirLock"] = {}


def _key(model_dir: str) -> str:
    path = model_dir.rstrip("/") or "/"
    return os.path.abspath(_local(path)) if _is_local(path) else path


def verify_held(model_dir: str) -> None:
    """Before writing into `model_dir`: if this process holds its lock, check that the lock file
    is still ours (refreshing it) or raise RunLockLostError; without a lock held here (a
    non-chief worker, a library caller that took none) there is nothing to check."""
    lock = _HELD.get(_key(model_dir))
    if lock is not None:
        lock.verify()


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


class _NotFound(Exception):
    """The lock file does not exist (either filesystem)."""


def _gfile():
    import tensorflow as tf  # only for non-local paths: a local lock stays cheap to take

    return tf


def _io_errors() -> tuple:
    """Exceptions of a failed file operation (OSError, and TF's OpError once TF is loaded)."""
    import sys

    tf = sys.modules.get("tensorflow")
    return (OSError, tf.errors.OpError) if tf is not None and hasattr(tf, "errors") else (OSError,)


def _makedirs(path: str) -> None:
    if _is_local(path):
        os.makedirs(_local(path), exist_ok=True)
    else:
        _gfile().io.gfile.makedirs(path)


def _read_text(path: str) -> str:
    if _is_local(path):
        try:
            with open(_local(path)) as f:
                return f.read()
        except FileNotFoundError:
            raise _NotFound(path) from None
    tf = _gfile()
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            return f.read()
    except tf.errors.NotFoundError:
        raise _NotFound(path) from None


def _remove(path: str) -> None:
    if _is_local(path):
        try:
            os.remove(_local(path))
        except FileNotFoundError:
            pass
        return
    tf = _gfile()
    try:
        tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
        pass


def _pid_alive(pid: int) -> bool:
    """True if a process `pid` runs on this host (one we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _pid_start(pid: int) -> Optional[str]:
    """The kernel's start time of `pid` (Linux /proc), to tell a reused PID from the holder."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class ModelDirLock:
    """Context manager (or `.acquire()` / `.release()`) over `<model_dir>/RUN_LOCK`.

    enabled=False makes every call a no-op: pass `enabled=is_chief` in multi-worker jobs.
    """

    def __init__(self, model_dir: str, enabled: bool = True):
        self.model_dir = model_dir
        self.enabled = enabled
        self.path = os.path.join(model_dir, LOCK_NAME)
        self._token: Optional[str] = None
        self._record: dict = {}
        self._lost: Optional[str] = None  # why the lock is no longer ours (verify() found it)

    # ------------------------------------------------------------------ public
    @property
    def held(self) -> bool:
        return self._token is not None

    def acquire(self) -> "ModelDirLock":
        """Take the lock (creating model_dir) or raise ModelDirLockedError."""
        if not self.enabled or self.held:
            return self
        token = uuid.uuid4().hex
        record = {"pid": os.getpid(), "host": socket.gethostname(), "token": token,
                  "pid_start": _pid_start(os.getpid()),
                  "started": datetime.datetime.now().isoformat(timespec="seconds")}
        try:
            _makedirs(self.model_dir)
        except _io_errors() as e:
            raise ModelDirLockedError(
                f"{self.model_dir}: cannot create the model directory to lock it: "
                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        try:
            for _ in range(5):
                if self._try_create(record):
                    self._token = token
                    self._record = record
                    _HELD[_key(self.model_dir)] = self
                    return self
                holder = self._read()
                if holder is None:  # removed (released) between our create and the read: retry
                    continue
                self._refuse_or_take_over(holder)
        except _io_errors() as e:  # read-only folder, no permission, lock is a dir
            raise ModelDirLockedError(
                f"{self.model_dir}: cannot create the run lock {self.path}: "
                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}; check that the "
                f"folder is writable, or use another --model_dir") from e
        raise ModelDirLockedError(
            f"{self.model_dir}: could not take the run lock {self.path} (it keeps changing: "
            f"another run is starting on this model_dir); use another --model_dir or retry")

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if _HELD.get(_key(self.model_dir)) is self:
            del _HELD[_key(self.model_dir)]
        self._lost = None
        if self._token is None:
            return
        try:
            holder = self._read()
            if holder is not None and holder.get("token") == self._token:
                self._remove()
        except _io_errors() as e:  # never mask the run's own outcome
            logging.warning("could not remove the run lock %s: %s", self.path, e)
        finally:
            self._token = None

    def verify(self) -> None:
        """Raise RunLockLostError unless the lock file is still this holder's; refresh it (its
        `refreshed` time) when it is. A lock that cannot be read (storage down) is an error too:
        writing without knowing would risk two runs interleaving."""
        if self._lost is not None:  # every later write is refused too
            raise RunLockLostError(self._lost)
        if self._token is None:
            return
        try:
            holder = self._read()
        except _io_errors() as e:
            raise RunLockLostError(
                f"{self.model_dir}: cannot read this run's lock {self.path} before writing "
                f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); stopped without "
                f"writing: restart with the same --model_dir when the storage is reachable") from e
        if holder is not None and holder.get("token") == self._token:
            self._refresh()
            return
        self._token = None  # not ours any more: release() must not remove the other run's lock
        if holder is None:
            what = "was removed while this run held it"
        elif not holder:
            what = "was replaced by an unreadable one"
        else:
            since = f", since {holder['started']}" if holder.get("started") else ""
            what = (f"is now held by another run (PID {holder.get('pid')} on host "
                    f"{holder.get('host')}{since})")
        self._lost = (
            f"{self.model_dir}: this run's lock {self.path} {what}; stopped before writing so "
            f"that two runs do not interleave checkpoints. Stop the other run (or use another "
            f"--model_dir), then restart this one with the same --model_dir to resume")
        raise RunLockLostError(self._lost)

    def _refresh(self) -> None:
        """Rewrite our lock with the time of this check (a heartbeat for whoever inspects it)."""
        record = dict(self._record, refreshed=datetime.datetime.now().isoformat(
            timespec="seconds"))
        data = json.dumps(record)
        try:
            if _is_local(self.path):
                path = _local(self.path)
                tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
                with open(tmp, "w") as f:
                    f.write(data)
                os.replace(tmp, path)  # atomic: a reader sees the old or the new record
            else:  # a new temp file renamed over the lock: TF's ram:// appends when "w" opens an
                # existing file (the lock would read as two records, i.e. unreadable), and a
                # temp name not starting with RUN_LOCK (ram:// matches names by prefix)
                tf = _gfile()
                tmp = os.path.join(self.model_dir,
                                   f".run_lock_refresh.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
                with tf.io.gfile.GFile(tmp, "w") as f:
                    f.write(data)
                tf.io.gfile.rename(tmp, self.path, overwrite=True)
        except _io_errors() as e:  # the lock is still ours; only the heartbeat is missed
            logging.warning("could not refresh the run lock %s: %s", self.path, e)

    def __enter__(self) -> "ModelDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False

    # ------------------------------------------------------------------ storage
    def _try_create(self, record: dict) -> bool:
        """Create the lock holding `record`; False if a lock file already exists."""
        data = json.dumps(record)
        if _is_local(self.path):
            return self._create_local(data)
        tf = _gfile()
        if tf.io.gfile.exists(self.path):
            return False
        with tf.io.gfile.GFile(self.path, "w") as f:
            f.write(data)
        time.sleep(0.05)  # let a racing writer land before reading back
        holder = self._read()
        return holder is not None and holder.get("token") == record["token"]

    def _create_local(self, data: str) -> bool:
        path = _local(self.path)
        tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "w") as f:
            f.write(data)
        try:
            os.link(tmp, path)  # atomic and exclusive, and the lock is never seen half-written
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links on this filesystem: exclusive create
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(data)
            return True
        finally:
            os.unlink(tmp)

    def _read(self) -> Optional[dict]:
        """The holder's record; None if there is no lock; {} if it cannot be parsed."""
        for attempt in range(3):
            try:
                text = _read_text(self.path)
            except _NotFound:
                return None
            try:
                record = json.loads(text)
                if isinstance(record, dict):
                    return record
            except ValueError:
                pass
            time.sleep(0.1 * (attempt + 1))  # a writer may be half-way (O_EXCL fallback)
        return {}

    def _remove(self) -> None:
        _remove(self.path)

    # ------------------------------------------------------------------ policy
    def _refuse_or_take_over(self, holder: dict) -> None:
        """Take over a dead holder's lock on this host; otherwise raise ModelDirLockedError."""
        host, pid = holder.get("host"), holder.get("pid")
        since = f", since {holder['started']}" if holder.get("started") else ""
        if not holder:
            raise ModelDirLockedError(
                f"{self.model_dir}: the run lock {self.path} is unreadable (left by a crashed "
                f"run?); if no other run uses this model_dir, delete {self.path} and retry")
        here = socket.gethostname()
        if host == here and isinstance(pid, int):
            reused = holder.get("pid_start") and _pid_start(pid) not in (None,
                                                                        holder["pid_start"])
            if not _pid_alive(pid) or reused:
                logging.warning("taking over the run lock %s of process %d on %s, which is no "
                                "longer running", self.path, pid, host)
                self._take_over(holder)
                return
            raise ModelDirLockedError(
                f"{self.model_dir} is in use by another run (PID {pid} on host {host}{since}; "
                f"lock file {self.path}); wait for it to finish or stop it, or use another "
                f"--model_dir")
        raise ModelDirLockedError(
            f"{self.model_dir} is in use by a run on another host (PID {pid} on host {host}"
            f"{since}; lock file {self.path}); if that run is no longer alive, delete {self.path} "
            f"and retry, or use another --model_dir")

    def _take_over(self, stale: dict) -> None:
        """Remove a stale lock, unless another run replaced it meanwhile."""
        if _is_local(self.path):
            path = _local(self.path)
            grave = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.stale"
            try:
                os.rename(path, grave)  # only one of racing takers gets the stale file
            except FileNotFoundError:
                return
            try:
                with open(grave) as f:
                    moved = json.loads(f.read())
            except (OSError, ValueError):
                moved = {}
            if moved.get("token") != stale.get("token"):
                try:  # a live run's fresh lock: put it back (fails if one exists again)
                    os.link(grave, path)
                except OSError:
                    pass
            os.unlink(grave)
            return
        current = self._read()
        if current is not None and current.get("token") == stale.get("token"):
            self._remove()
