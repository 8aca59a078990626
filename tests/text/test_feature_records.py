"""text/feature_records.py: write once, read back in order with core ops, reuse while the key
holds, rebuild when stale or truncated, and the settings that choose records."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.text import feature_records as fr


def _units(n=7, ragged=False):
    """n feature dicts: int32 [3], float32 [], int32 [] index; with `ragged` a [K, 2] field."""
    rng = np.random.default_rng(0)
    cols = {"ids": rng.integers(0, 1000, [n, 3]).astype(np.int32),
            "weight": rng.random(n).astype(np.float32),
            "index": np.arange(n, dtype=np.int32)}
    ds = tf.data.Dataset.from_tensor_slices(cols)
    if ragged:
        ds = ds.map(lambda f: dict(f, windows=tf.fill([f["index"] % 3 + 1, 2], f["index"])))
    return ds


def _rows(ds):
    return list(ds.as_numpy_iterator())


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert sorted(x) == sorted(y)
        for k in x:
            assert x[k].dtype == y[k].dtype, k
            np.testing.assert_array_equal(x[k], y[k])


@pytest.mark.parametrize("ragged", [False, True])
def test_round_trip_in_order_with_dtypes_and_variable_leading_dim(tmp_path, ragged):
    key = {"task": "t", "ragged": ragged}
    records = fr.build_or_load(str(tmp_path), "t-train", key, lambda: _units(ragged=ragged))
    assert records.num_records == 7
    _same(_rows(records.dataset()), _rows(_units(ragged=ragged)))
    spec = records.dataset().element_spec
    assert spec["ids"].shape.as_list() == [3] and spec["weight"].dtype == tf.float32
    if ragged:
        assert spec["windows"].shape.as_list() == [None, 2]


def test_shuffled_records_follow_the_shuffled_examples_order(tmp_path):
    """shuffle(n, seed) + repeat over the records = the same over the examples they were made
    from (the tokenizing pipelines shuffle examples before encoding them)."""
    records = fr.build_or_load(str(tmp_path), "t", {"k": 1}, lambda: _units(9))
    a = _rows(records.dataset(shuffle_seed=11, repeat=True).take(27))
    b = _rows(_units(9).shuffle(9, seed=11, reshuffle_each_iteration=True).repeat().take(27))
    _same(a, b)
    order = [int(x["index"]) for x in a]
    assert order[:9] != order[9:18] and sorted(order[:9]) == list(range(9))  # reshuffled


def test_reused_while_the_key_holds_and_rebuilt_when_stale_or_truncated(tmp_path):
    calls = []

    def make(n=7):
        calls.append(n)
        return _units(n)

    root = str(tmp_path)
    first = fr.build_or_load(root, "t", {"vocab": "a"}, make)
    again = fr.build_or_load(root, "t", {"vocab": "a"}, make)
    assert len(calls) == 1 and again.directory == first.directory
    # Another key (other data, vocab or options): other records, the old ones untouched.
    other = fr.build_or_load(root, "t", {"vocab": "b"}, lambda: make(5))
    assert len(calls) == 2 and other.directory != first.directory and other.num_records == 5
    # A truncated shard is found by its size and the records are rebuilt.
    shard = first.files[0]
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) - 3)
    assert "truncated" in fr.check_records(first.directory, fr.key_digest({"vocab": "a"}))[1]
    rebuilt = fr.build_or_load(root, "t", {"vocab": "a"}, make)
    assert len(calls) == 3
    _same(_rows(rebuilt.dataset()), _rows(_units(7)))
    # A manifest of another key in the folder (hand-copied records) is refused and rebuilt.
    manifest = os.path.join(first.directory, fr.MANIFEST_NAME)
    m = json.load(open(manifest))
    m["key_sha256"] = "0" * 64
    json.dump(m, open(manifest, "w"))
    assert "stale" in fr.check_records(first.directory, fr.key_digest({"vocab": "a"}))[1]
    fr.build_or_load(root, "t", {"vocab": "a"}, make)
    assert len(calls) == 4
    assert not [n for n in os.listdir(root) if n.startswith(".")]  # no temporary folder left


def test_lazy_source_writes_nothing_until_asked(tmp_path):
    root = str(tmp_path / "records")
    source = fr.RecordSource(root, "t", {"k": 2}, lambda: _units(4))
    assert not os.path.exists(root)
    _same(_rows(source.dataset()), _rows(_units(4)))
    assert source.get() is source.get()


def test_fingerprint_sees_every_text_and_label():
    from funnel_tf.text.classification import TextExamples

    def ex(texts, labels):
        return TextExamples(texts, None, np.array(labels, np.int32),
                            [str(i) for i in range(len(texts))], ("a", "b"))

    base = fr.fingerprint(ex(["x y", "z"], [0, 1]))
    assert base == fr.fingerprint(ex(["x y", "z"], [0, 1]))
    assert base != fr.fingerprint(ex(["x y", "z "], [0, 1]))
    assert base != fr.fingerprint(ex(["x y", "z"], [1, 1]))
    assert base != fr.fingerprint(ex(["x", "y z"], [0, 1]))


def test_modes_and_pod_storage_check(tmp_path):
    assert [fr.normalize_mode(m) for m in ("auto", True, "false", "ALWAYS", None)] == [
        "auto", "always", "never", "always", "auto"]
    with pytest.raises(fr.FeatureRecordsError, match="feature_records"):
        fr.normalize_mode("maybe")
    assert fr.use_records("auto", "tpu") and fr.use_records("auto", "multi_worker")
    assert not fr.use_records("auto", "mirrored") and not fr.use_records("never", "tpu")
    assert fr.use_records("always", "default")
    fr.check_root(str(tmp_path), "tpu", 1)          # one TPU host reads its own disk
    fr.check_root("gs://bucket/records", "tpu", 4)
    with pytest.raises(fr.FeatureRecordsError, match="gs://"):
        fr.check_root(str(tmp_path), "tpu", 4)


def test_workers_writing_the_same_records_at_once_agree(tmp_path):
    """Multi-worker: each worker that finds no valid copy writes its own; racing on one shared
    folder, every one ends with complete, identical records and no temporary folder is left."""
    import threading

    root, results, errors = str(tmp_path), [None] * 3, []
    together = threading.Barrier(3)  # all three found no records and start writing at once

    def make():
        together.wait(timeout=60)
        return _units(40)

    def worker(i):
        try:
            results[i] = fr.build_or_load(root, "t", {"k": 3}, make)
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({r.directory for r in results}) == 1
    for r in results:
        _same(_rows(r.dataset()), _rows(_units(40)))
    assert sorted(os.listdir(root)) == [os.path.basename(results[0].directory)]


def test_non_chief_waits_for_the_chiefs_records_and_says_when_they_never_come(tmp_path):
    import threading

    root, key = str(tmp_path), {"k": 4}
    got = {}
    waiter = threading.Thread(target=lambda: got.update(r=fr.build_or_load(
        root, "t", key, lambda: pytest.fail("a non-chief never writes"), write=False,
        wait_s=120)))
    waiter.start()
    chief = fr.build_or_load(root, "t", key, lambda: _units(6))
    waiter.join()
    assert got["r"].directory == chief.directory
    _same(_rows(got["r"].dataset()), _rows(_units(6)))
    with pytest.raises(fr.FeatureRecordsError, match="chief's feature records"):
        fr.build_or_load(root, "t", {"k": 5}, lambda: _units(6), write=False, wait_s=0.1)
    assert sorted(os.listdir(root)) == [os.path.basename(chief.directory)]
