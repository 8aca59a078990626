"""ModelDirLock: one run per model_dir (same process, other process, other host refused; a dead
holder's lock taken over), on local paths and through tf.io.gfile (ram://)."""

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest
import tensorflow as tf

from funnel_tf.errors import UserError, one_line
from funnel_tf.engine.run_lock import LOCK_NAME, ModelDirLock, ModelDirLockedError


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_second_holder_in_the_same_process_is_refused_with_pid_and_host(tmp_path):
    d = str(tmp_path / "run")
    with ModelDirLock(d) as lock:
        assert lock.held and os.path.exists(os.path.join(d, LOCK_NAME))
        with pytest.raises(ModelDirLockedError) as e:
            ModelDirLock(d).acquire()
        msg = one_line(e.value)
        assert isinstance(e.value, UserError)
        assert f"PID {os.getpid()}" in msg and socket.gethostname() in msg
        assert os.path.join(d, LOCK_NAME) in msg and "--model_dir" in msg
    assert not os.path.exists(os.path.join(d, LOCK_NAME))  # released
    with ModelDirLock(d):  # and can be taken again
        pass


def test_second_process_is_refused(tmp_path):
    d = str(tmp_path)
    code = ("import sys\nfrom funnel_tf.engine.run_lock import ModelDirLock, ModelDirLockedError\n"
            "try:\n    ModelDirLock(sys.argv[1]).acquire()\n"
            "except ModelDirLockedError as e:\n    print(e); sys.exit(3)\n")
    with ModelDirLock(d):
        out = subprocess.run([sys.executable, "-c", code, d], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.returncode == 3, out.stderr[-2000:]
    assert f"PID {os.getpid()}" in out.stdout


def _write_lock(path, **record):
    base = {"pid": 1, "host": socket.gethostname(), "token": uuid.uuid4().hex,
            "started": "2026-01-01T00:00:00"}
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps({**base, **record}))


def test_stale_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    _write_lock(str(tmp_path / LOCK_NAME), pid=_dead_pid())
    with ModelDirLock(str(tmp_path)) as lock:
        assert lock.held
        with open(tmp_path / LOCK_NAME) as f:
            assert json.load(f)["pid"] == os.getpid()
    assert sorted(os.listdir(tmp_path)) == []  # no temp / stale files left behind


def test_lock_from_another_host_is_refused_saying_how_to_remove_it(tmp_path):
    _write_lock(str(tmp_path / LOCK_NAME), pid=_dead_pid(), host="tpu-vm-elsewhere")
    with pytest.raises(ModelDirLockedError) as e:
        ModelDirLock(str(tmp_path)).acquire()
    msg = one_line(e.value)
    assert "tpu-vm-elsewhere" in msg and f"delete {tmp_path / LOCK_NAME}" in msg


def test_unreadable_lock_is_refused_not_overwritten(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    with pytest.raises(ModelDirLockedError, match="unreadable"):
        ModelDirLock(str(tmp_path)).acquire()
    assert (tmp_path / LOCK_NAME).read_text() == ""


def test_creates_model_dir_and_disabled_lock_does_nothing(tmp_path):
    d = tmp_path / "a" / "b"
    with ModelDirLock(str(d), enabled=False) as lock:
        assert not lock.held
    assert not d.exists()
    with ModelDirLock(str(d)):
        assert (d / LOCK_NAME).exists()


def test_ram_filesystem_lock_refuse_release_and_take_over():
    d = f"ram://lock_{uuid.uuid4().hex}/model"
    with ModelDirLock(d) as lock:
        assert lock.held and tf.io.gfile.exists(f"{d}/{LOCK_NAME}")
        with pytest.raises(ModelDirLockedError, match=f"PID {os.getpid()}"):
            ModelDirLock(d).acquire()
    assert not tf.io.gfile.exists(f"{d}/{LOCK_NAME}")
    _write_lock(f"{d}/{LOCK_NAME}", pid=_dead_pid())
    with ModelDirLock(d) as lock:
        assert lock.held


def test_unwritable_model_dir_is_a_user_error(tmp_path, monkeypatch):
    def denied(self, data):
        raise PermissionError(13, "Permission denied", str(tmp_path))
    monkeypatch.setattr(ModelDirLock, "_create_local", denied)
    with pytest.raises(ModelDirLockedError, match="cannot create the run lock.*Permission denied"):
        ModelDirLock(str(tmp_path)).acquire()


def test_lock_path_taken_by_a_folder_is_a_user_error(tmp_path):
    (tmp_path / LOCK_NAME).mkdir()
    with pytest.raises(ModelDirLockedError, match="RUN_LOCK"):
        ModelDirLock(str(tmp_path)).acquire()


# ------------------------------------------------------------------ a lock lost under a live run
def test_lock_deleted_under_the_holder_is_refused_at_the_next_write(tmp_path):
    """verify_held: still ours -> refreshed; deleted -> RunLockLostError (a one-line UserError)
    now and at every later check; release() then removes nothing (a new run's lock stays)."""
    from funnel_tf.engine.run_lock import RunLockLostError, verify_held

    d = str(tmp_path / "run")
    lock = ModelDirLock(d).acquire()
    path = os.path.join(d, LOCK_NAME)
    verify_held(d + "/")  # the same folder however it is spelled
    assert "refreshed" in json.loads(open(path).read())
    os.remove(path)
    for _ in range(2):
        with pytest.raises(RunLockLostError) as e:
            verify_held(d)
        msg = one_line(e.value)
        assert isinstance(e.value, UserError) and msg == str(e.value)
        assert f"{path} was removed while this run held it" in msg and "--model_dir" in msg
    other = ModelDirLock(d).acquire()  # a second run takes the folder
    lock.release()
    assert os.path.exists(path)  # the first run's release leaves the second run's lock alone
    verify_held(d)  # the second run's own check passes
    other.release()
    verify_held(d)  # no lock held here: nothing to check


def test_lock_taken_by_another_run_names_it(tmp_path):
    from funnel_tf.engine.run_lock import RunLockLostError, verify_held

    d = str(tmp_path)
    lock = ModelDirLock(d).acquire()
    _write_lock(os.path.join(d, LOCK_NAME), pid=4242, host="other-host")
    with pytest.raises(RunLockLostError, match=r"is now held by another run \(PID 4242 on host "
                                               r"other-host, since 2026-01-01T00:00:00\)"):
        verify_held(d)
    lock.release()
    assert json.loads(open(os.path.join(d, LOCK_NAME)).read())["host"] == "other-host"


def test_refreshing_a_ram_filesystem_lock_keeps_it_readable_and_ours():
    """verify_held refreshes the lock; TF's ram:// appends when "w" opens an existing file, so a
    rewrite in place made the lock two records (unreadable) and the next check stopped the run."""
    from funnel_tf.engine.run_lock import verify_held

    d = f"ram://lock_{uuid.uuid4().hex}/model"
    lock = ModelDirLock(d).acquire()
    for _ in range(3):  # every check finds the lock ours and leaves one readable record
        verify_held(d)
        with tf.io.gfile.GFile(f"{d}/{LOCK_NAME}") as f:
            record = json.loads(f.read())
        assert record["token"] == lock._token and "refreshed" in record
    assert tf.io.gfile.listdir(d) == [LOCK_NAME]  # no temp file left beside it
    lock.release()
    assert not tf.io.gfile.exists(f"{d}/{LOCK_NAME}")
