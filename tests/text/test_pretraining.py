"""Pretraining records: layout, A/B pairs, determinism, bad input, manifest, per-host reading, CLI."""

import json
import pathlib
import time

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.text import masking
from funnel_tf.text.__main__ import main as cli_main
from funnel_tf.text.masking import MlmMasker
from funnel_tf.text.pretraining_reader import make_pretraining_dataset
from funnel_tf.text.pretraining import ExampleMaker, MANIFEST_NAME, create_pretraining_data
from funnel_tf.text.wordpiece import WordpieceTokenizer

REPO = pathlib.Path(__file__).resolve().parents[2]
DEMO_CORPUS = REPO / "data" / "demo_corpus.txt"
DEMO_VOCAB = REPO / "data" / "demo_vocab.txt"
SEQ = 48


def _read_records(out_dir, seq_len=SEQ):
    files = sorted(str(p) for p in pathlib.Path(out_dir).glob("*.tfrecord"))
    spec = {"input_ids": tf.io.FixedLenFeature([seq_len], tf.int64),
            "token_type_ids": tf.io.FixedLenFeature([seq_len], tf.int64),
            "label": tf.io.FixedLenFeature([1], tf.int64)}
    out = []
    for f in files:
        for rec in tf.data.TFRecordDataset(f):
            ex = tf.io.parse_single_example(rec, spec)
            out.append({k: v.numpy() for k, v in ex.items()})
    return out


@pytest.fixture(scope="module")
def demo_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_records")
    manifest = create_pretraining_data([str(DEMO_CORPUS)], str(out), str(DEMO_VOCAB), seq_len=SEQ,
                                       num_shards=3, seed=7, progress=None)
    return out, manifest


@pytest.fixture(scope="module")
def demo_tok():
    return WordpieceTokenizer(str(DEMO_VOCAB))


def test_manifest_counts_and_hash(demo_records, demo_tok):
    out, m = demo_records
    on_disk = json.loads((out / MANIFEST_NAME).read_text())
    assert on_disk == m
    assert m["seq_len"] == SEQ and m["documents"] == 27 and m["sentences"] == 270
    assert m["num_examples"] == m["num_positive"] + m["num_negative"] == sum(f["num_examples"] for f in m["files"])
    assert m["num_examples"] > 100
    assert m["vocab_sha256"] == demo_tok.vocab_sha256() and m["vocab_size"] == demo_tok.vocab_size
    assert m["special_ids"] == {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
    # Roughly half the pairs use a random B (a bit more: single over-long A's are always random).
    assert 0.4 < m["num_negative"] / m["num_examples"] < 0.75


def test_records_are_cls_a_sep_b_sep_with_reference_types(demo_records, demo_tok):
    out, m = demo_records
    records = _read_records(out)
    assert len(records) == m["num_examples"]
    for r in records:
        ids, types = r["input_ids"], r["token_type_ids"]
        assert ids[0] == demo_tok.cls_id and ids[-1] == demo_tok.sep_id
        seps = np.flatnonzero(ids == demo_tok.sep_id)
        assert len(seps) == 2 and seps[0] >= 2 and seps[1] - seps[0] >= 2  # non-empty A and B
        assert demo_tok.pad_id not in ids  # full examples, no padding (as the original)
        want = np.concatenate([[2], np.zeros(seps[0], int), np.ones(SEQ - seps[0] - 1, int)])
        np.testing.assert_array_equal(types, want)
        assert r["label"][0] in (0, 1)


def test_a_and_b_are_runs_of_the_token_stream(tmp_path, demo_tok):
    """With one document stream in order, A and every B are contiguous pieces of the text."""
    out = tmp_path / "rec"
    create_pretraining_data([str(DEMO_CORPUS)], str(out), str(DEMO_VOCAB), seq_len=SEQ, num_shards=1,
                            seed=3, doc_mode="file", shuffle_buffer_tokens=0, progress=None)
    lines = [l for l in DEMO_CORPUS.read_text(encoding="utf-8").splitlines() if l.strip()]
    stream = " " + " ".join(map(str, demo_tok.tokenize(tf.constant(lines)).flat_values.numpy())) + " "
    as_text = lambda a: " " + " ".join(map(str, a)) + " "
    records = _read_records(out)
    for r in records:
        ids = r["input_ids"]
        s1, s2 = np.flatnonzero(ids == demo_tok.sep_id)
        assert as_text(ids[1:s1]) in stream
        assert as_text(ids[s1 + 1:s2]) in stream
    positives = [r for r in records if r["label"][0] == 1]
    assert positives and len(positives) < len(records)


def test_deterministic_for_a_seed(tmp_path):
    def run(name, seed):
        create_pretraining_data([str(DEMO_CORPUS)], str(tmp_path / name), str(DEMO_VOCAB), seq_len=SEQ,
                                num_shards=2, seed=seed, progress=None, overwrite=True)
        return [p.read_bytes() for p in sorted((tmp_path / name).glob("*.tfrecord"))]
    assert run("a", 11) == run("b", 11)
    assert run("a", 11) != run("c", 12)


def test_example_maker_truncates_longest_first_and_handles_long_sentences():
    maker = ExampleMaker(seq_len=11, cls_id=1, sep_id=2, pad_id=0, seed=0, random_b_prob=0.0)
    # Budget 8: sentences of 5 and 6 tokens -> positive pair trimmed to 4 + 4 (B trimmed at random sides).
    out = list(maker.add_sentence(np.arange(10, 15))) + list(maker.add_sentence(np.arange(20, 26)))
    assert len(out) == 1 and out[0].label == 1
    ids = out[0].input_ids
    np.testing.assert_array_equal(ids[:6], [1, 10, 11, 12, 13, 2])
    b = ids[6:10]
    assert ids[10] == 2 and np.all(np.diff(b) == 1) and 20 <= b[0] <= 22
    # A single sentence longer than the budget: always a random-B pair, A cut to its head.
    long_out = list(maker.add_sentence(np.arange(100, 120)))
    assert len(long_out) == 1 and long_out[0].label == 0
    assert long_out[0].input_ids[1] == 100 and len(long_out[0].input_ids) == 11


def test_inputs_that_match_nothing_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="matched no files"):
        create_pretraining_data([str(tmp_path / "nope*.txt")], str(tmp_path / "o"), str(DEMO_VOCAB), progress=None)


def test_reader_shards_files_per_host_and_batches_statically(demo_records):
    out, m = demo_records
    pattern = str(out / "*.tfrecord")
    seen = []
    for pid in range(3):
        ctx = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=pid, num_replicas_in_sync=3)
        ds = make_pretraining_dataset(pattern, SEQ, batch_size=6, input_context=ctx, shuffle=False, repeat=False)
        assert ds.element_spec["input_ids"].shape.as_list() == [2, SEQ]  # per-replica batch
        ids = np.concatenate([b["input_ids"].numpy() for b in ds])
        seen.append({tuple(r) for r in ids})
        assert ids.shape[0] == (m["files"][pid]["num_examples"] // 2) * 2  # drop_remainder
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2])  # disjoint files per host
    # More pipelines than files: examples are sharded instead, still disjoint.
    ctx = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=3, num_replicas_in_sync=4)
    ds = make_pretraining_dataset(pattern, SEQ, 4, input_context=ctx, shuffle=False, repeat=False)
    n = sum(b["input_ids"].shape[0] for b in ds)
    assert 0 < n <= m["num_examples"] // 4


def test_reader_repeats_shuffles_and_checks_seq_len(demo_records):
    out, m = demo_records
    ds = make_pretraining_dataset(str(out / "*.tfrecord"), SEQ, batch_size=16, seed=1)
    batches = list(ds.take(m["num_examples"] // 16 + 3))  # more than one epoch: repeat() works
    b = batches[0]
    assert set(b) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(v.dtype == tf.int32 and v.shape == (16, SEQ) for v in b.values())
    assert int(tf.reduce_min(b["attention_mask"])) == 1  # pretraining examples are full
    with pytest.raises(ValueError, match="seq_len=48"):
        make_pretraining_dataset(str(out / "*.tfrecord"), 64, 8)


def _recording(masker, keys):
    """`masker`, also appending the key of every batch it masks to `keys` (as it runs)."""
    def fn(features, seed=None):
        note = tf.py_function(lambda k: keys.append(tuple(k.numpy().tolist())) or 0, [seed], tf.int32)
        with tf.control_dependencies([note]):
            return {k: tf.identity(v) for k, v in masker(features, seed=seed).items()}
    return fn


@pytest.mark.parametrize("pipelines", [2, 4])  # 2: files are sharded; 4 > 3 files: examples
def test_start_batch_gives_the_same_masked_batches_without_parsing_or_masking_the_skipped(
        demo_records, demo_tok, pipelines):
    """Batch k is the same (examples and masks) whether the pipeline starts at 0 or at k, even
    k epochs in; a pipeline started at k masks (and so parses: one map does both) no batch before
    k, and starting 10**9 batches in is as quick as starting at 5. Masks run in parallel
    (AUTOTUNE) and two builds give the same stream (checked once: the masking does not depend
    on how the files are sharded)."""
    out, _ = demo_records
    masker = MlmMasker.from_tokenizer(demo_tok, SEQ)
    pid = pipelines - 1
    ctx = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pid,
                                     num_replicas_in_sync=pipelines)

    def stream(start, n, keys=None):
        ds = make_pretraining_dataset(str(out / "*.tfrecord"), SEQ, 4 * pipelines, input_context=ctx,
                                      seed=11, shuffle_buffer=32, start_batch=start,
                                      masker=masker if keys is None else _recording(masker, keys))
        return [np.concatenate([b[k].numpy() for k in ("input_ids", "masked_positions", "masked_ids")], 1)
                for b in ds.take(n)]

    full = stream(0, 36)  # 4 per replica: 9-12 batches an epoch, so 3-4 epochs
    assert not any(np.array_equal(full[0], b) for b in full[1:])
    if pipelines == 2:
        again = stream(0, 36)
        assert len(again) == 36
        assert all(np.array_equal(a, b) for a, b in zip(full, again))  # parallel masking, same masks
    times = {}
    for k in (5, 31, 10 ** 9):
        keys, t = [], time.perf_counter()
        got = stream(k, 3, keys)
        times[k] = time.perf_counter() - t
        for i, (a, b) in enumerate(zip(got, full[k:k + 3])):
            np.testing.assert_array_equal(a, b, err_msg=f"start {k}, batch {k + i}")
        assert len(got) == 3
        later = {tuple(masking.batch_key(11, j, stream=pid).numpy().tolist()) for j in range(k, k + 64)}
        assert keys and set(keys) <= later, "a batch before start_batch was parsed and masked"
        assert tuple(masking.batch_key(11, k, stream=pid).numpy().tolist()) in keys  # parallel: any order
    assert times[10 ** 9] < 3 * times[5] + 5, times  # O(one epoch), not O(start_batch)


def test_cli_create_pretraining_data_and_build_vocab(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    assert cli_main(["build-vocab", "--input", str(DEMO_CORPUS), "--output", str(vocab),
                     "--vocab_size", "600", "--special_layout", "compact"]) == 0
    tok = WordpieceTokenizer(str(vocab))
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert cli_main(["create-pretraining-data", "--input", str(DEMO_CORPUS), "--vocab", str(vocab),
                     "--output_dir", str(tmp_path / "rec"), "--seq_len", "32", "--num_shards", "2",
                     "--max_examples", "10"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "rec" / MANIFEST_NAME).read_text())
    assert report["num_examples"] == 10 and report["seq_len"] == 32 and '"num_examples": 10' in printed


# ----------------------------------------------------------------- bad input, old outputs
def _cli(argv, capsys):
    code = cli_main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def test_cli_refuses_non_empty_output_dir_and_overwrite_replaces_only_its_own_shards(tmp_path, capsys):
    out = tmp_path / "rec"
    common = ["create-pretraining-data", "--input", str(DEMO_CORPUS), "--vocab", str(DEMO_VOCAB),
              "--output_dir", str(out), "--seq_len", "32", "--max_examples", "8",
              "--progress_every_s", "1000"]
    assert cli_main(common + ["--num_shards", "4"]) == 0
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    code, err = _cli(common + ["--num_shards", "2"], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("python -m funnel_tf.text: error: --output_dir") and "--overwrite" in err[0]
    assert len(list(out.glob("*.tfrecord"))) == 4  # refused: nothing changed
    assert cli_main(common + ["--num_shards", "2", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST_NAME, "notes.txt", "pretrain-00000-of-00002.tfrecord", "pretrain-00001-of-00002.tfrecord"]


def test_reader_refuses_shards_the_manifest_does_not_list(tmp_path):
    out = tmp_path / "rec"
    create_pretraining_data([str(DEMO_CORPUS)], str(out), str(DEMO_VOCAB), seq_len=SEQ, num_shards=2,
                            seed=1, max_examples=6, progress=None)
    stray = out / "old-00000-of-00001.tfrecord"
    stray.write_bytes((out / "pretrain-00000-of-00002.tfrecord").read_bytes())
    from funnel_tf.text.errors import PretrainingDataError
    with pytest.raises(PretrainingDataError, match=r"1 file\(s\) are not listed in its manifest.json "
                                                   r"\(e\.g\. old-00000-of-00001\.tfrecord\)"):
        make_pretraining_dataset(str(out / "*.tfrecord"), SEQ, 2)
    make_pretraining_dataset(str(out / "pretrain-*.tfrecord"), SEQ, 2)  # the listed ones are fine


def test_a_truncated_shard_is_refused_before_reading(tmp_path):
    """The manifest records each shard's size: an interrupted copy is named up front, not found
    as a DataLossError mid-training."""
    from funnel_tf.text.errors import PretrainingDataError

    out = tmp_path / "rec"
    manifest = create_pretraining_data([str(DEMO_CORPUS)], str(out), str(DEMO_VOCAB), seq_len=SEQ,
                                       num_shards=2, seed=1, max_examples=6, progress=None)
    shard = out / "pretrain-00001-of-00002.tfrecord"
    assert [e["bytes"] for e in manifest["files"]][1] == shard.stat().st_size > 0
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(PretrainingDataError, match=r"pretrain-00001-of-00002\.tfrecord: \d+ bytes, "
                                                   r"but .*manifest.json says \d+: truncated"):
        make_pretraining_dataset(str(out / "*.tfrecord"), SEQ, 2)


@pytest.mark.parametrize("content, words", [
    (b"", "the corpus is empty"),
    (b"\n\n   \n\t\n", "the corpus is empty"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00binary", "looks like a binary file"),
    ("one line\n".encode("utf-16"), "is UTF-16 text; convert it to UTF-8"),
])
def test_cli_empty_or_binary_corpus_is_one_line_and_writes_nothing(tmp_path, capsys, content, words):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    out = tmp_path / "rec"
    code, err = _cli(["create-pretraining-data", "--input", str(corpus), "--vocab", str(DEMO_VOCAB),
                      "--output_dir", str(out)], capsys)
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert not out.exists()
    code, err = _cli(["build-vocab", "--input", str(corpus), "--output", str(tmp_path / "v.txt")], capsys)
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert not (tmp_path / "v.txt").exists()


@pytest.mark.parametrize("vocab_text, words", [
    (None, "vocab file not found"),
    ("", "empty vocab file"),
    ("hello\nworld\n", "needed for"),
])
def test_cli_bad_vocab_is_one_line(tmp_path, capsys, vocab_text, words):
    vocab = tmp_path / "vocab.txt"
    if vocab_text is not None:
        vocab.write_text(vocab_text)
    code, err = _cli(["create-pretraining-data", "--input", str(DEMO_CORPUS), "--vocab", str(vocab),
                      "--output_dir", str(tmp_path / "rec")], capsys)
    assert code == 2 and len(err) == 1 and words in err[0] and str(vocab) in err[0], err
    assert not (tmp_path / "rec").exists()


def test_too_short_corpus_leaves_no_shards(tmp_path):
    corpus = tmp_path / "short.txt"
    corpus.write_text("one short line.\nand another.\n")
    from funnel_tf.text.errors import PretrainingDataError
    with pytest.raises(PretrainingDataError, match="no complete 48-token example"):
        create_pretraining_data([str(corpus)], str(tmp_path / "rec"), str(DEMO_VOCAB), seq_len=SEQ,
                                progress=None)
    assert not (tmp_path / "rec").exists()


def test_long_lines_are_counted_and_reported(tmp_path, caplog, capsys):
    corpus = tmp_path / "long.txt"
    long_line = " ".join(["the river was warm"] * 500)  # ~2000 tokens on one line
    corpus.write_text(DEMO_CORPUS.read_text() + "\n" + long_line + "\n\n" + long_line + "\n")
    with caplog.at_level("WARNING", logger="absl"):
        m = create_pretraining_data([str(corpus)], str(tmp_path / "rec"), str(DEMO_VOCAB), seq_len=SEQ,
                                    num_shards=1, progress=lambda msg: None)
    assert m["truncated_lines"] == 2 and m["truncated_tokens"] > 3000
    assert "2 line(s) were longer than one 48-token example and were truncated" in caplog.text
    # The command line says it once, on stderr beside its progress lines.
    assert cli_main(["create-pretraining-data", "--input", str(corpus), "--vocab", str(DEMO_VOCAB),
                     "--output_dir", str(tmp_path / "cli"), "--seq_len", str(SEQ)]) == 0
    err = capsys.readouterr().err
    assert err.count("2 line(s) were longer than one 48-token example") == 1, err


def test_cli_build_vocab_refuses_to_replace_a_vocab_unless_overwrite(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nold\n")
    argv = ["build-vocab", "--input", str(DEMO_CORPUS), "--output", str(vocab), "--vocab_size", "600",
            "--special_layout", "compact"]
    code, err = _cli(argv, capsys)
    assert code == 2 and len(err) == 1 and "already exists; pass --overwrite" in err[0], err
    assert vocab.read_text().endswith("old\n")
    assert cli_main(argv + ["--overwrite"]) == 0
    assert WordpieceTokenizer(str(vocab)).vocab_size > 100 and not (tmp_path / "vocab.txt.partial").exists()


def test_cli_unknown_fallback_encoding_is_one_line(tmp_path, capsys):
    code, err = _cli(["create-pretraining-data", "--input", str(DEMO_CORPUS), "--vocab", str(DEMO_VOCAB),
                      "--output_dir", str(tmp_path / "rec"), "--fallback_encoding", "nope"], capsys)
    assert code == 2 and len(err) == 1 and "unknown fallback encoding 'nope'" in err[0], err
    assert not (tmp_path / "rec").exists()


def test_cli_usage_errors_are_one_line(tmp_path):
    import subprocess
    import sys
    res = subprocess.run([sys.executable, "-m", "funnel_tf.text", "create-pretraining-data", "--seq_len", "abc"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "python -m funnel_tf.text create-pretraining-data: error: argument --seq_len: invalid int value: "
        "'abc' (see --help)"], res.stderr


def test_cli_bad_prefix_is_refused_before_writing(tmp_path, capsys):
    code, err = _cli(["create-pretraining-data", "--input", str(DEMO_CORPUS), "--vocab", str(DEMO_VOCAB),
                      "--output_dir", str(tmp_path / "rec"), "--prefix", "sub/part"], capsys)
    assert code == 2 and len(err) == 1 and "prefix must be a plain file-name prefix" in err[0], err
    assert not (tmp_path / "rec").exists()
