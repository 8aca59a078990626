"""funnel_tf.storage: comparing locations and moving folders on local disks and through
tf.io.gfile (ram:// stands in for gs://, where a folder rename does not move what is in it)."""

import os
import uuid

import pytest
import tensorflow as tf

from funnel_tf import storage


def _files(root):
    """Files up to two levels under `root` (glob: exact on ram://, unlike walk / listdir)."""
    found = tf.io.gfile.glob(f"{root}/*") + tf.io.gfile.glob(f"{root}/*/*")
    return sorted(p[len(root) + 1:] for p in found if not tf.io.gfile.isdir(p))


def _write(path, text):
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


@pytest.fixture(params=["local", "ram"])
def root(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path)
        return
    root = f"ram://storage_{uuid.uuid4().hex}"
    yield root
    storage.remove_tree(root)


def test_replace_dir_moves_every_file_and_recovers_an_interrupted_replace(root):
    best, tmp = f"{root}/best", f"{root}/new"
    _write(f"{root}/best_result.json", "{}")     # ram:// sees it as best/_result.json
    _write(f"{best}/a.txt", "old")
    _write(f"{tmp}/a.txt", "new")
    _write(f"{tmp}/sub/b.txt", "nested")
    storage.replace_dir(tmp, best)
    assert _files(best) == ["a.txt", "sub/b.txt"] and not tf.io.gfile.exists(tmp)
    with tf.io.gfile.GFile(f"{best}/sub/b.txt") as f:
        assert f.read() == "nested"
    assert not storage.exists(storage._old(best))

    storage.move_dir(best, storage._old(best))   # a replace cut short between its two moves
    storage.recover_dir(best)
    assert _files(best) == ["a.txt", "sub/b.txt"] and not storage.exists(storage._old(best))
    assert _files(root) == ["best/a.txt", "best_result.json"]
    storage.remove_tree(best)
    assert not storage.exists(best) and _files(root) == ["best_result.json"]


def test_temp_dir_beside_is_on_the_same_filesystem(root):
    tmp = storage.make_temp_dir_beside(f"{root}/export", ".export_")
    assert storage.parent(tmp) == storage.canonical(root) and tf.io.gfile.isdir(tmp)


@pytest.mark.parametrize("a, b, overlap", [
    ("/x/run", "/x/run/", True), ("/x/run", "/x/run/export", True), ("/x", "/x/run", True),
    ("/x/run", "/x/run2", False), ("/x/run/../export", "/x/run", False),
    ("gs://b/run", "gs://b/run/export", True), ("gs://b/run", "gs://b/run2", False),
    ("gs://b/a/../run", "gs://b/run", True), ("gs://b/run", "/b/run", False)])
def test_overlap(a, b, overlap):
    assert storage.overlap(a, b) is overlap and storage.overlap(b, a) is overlap


def test_overlap_sees_through_symlinks(tmp_path):
    (tmp_path / "run").mkdir()
    os.symlink(tmp_path / "run", tmp_path / "link")
    assert storage.overlap(str(tmp_path / "link" / "export"), str(tmp_path / "run"))


def test_atomic_write_replaces_a_temp_file_a_killed_run_left(root):
    from funnel_tf.tasks.base import atomic_write_json, atomic_write_text

    path = f"{root}/run/task.json"
    atomic_write_text(path + ".tmp", '{"half": ')          # a write cut short
    atomic_write_json(path, {"task": "csv"})
    with tf.io.gfile.GFile(path) as f:
        assert f.read() == '{\n  "task": "csv"\n}\n'
