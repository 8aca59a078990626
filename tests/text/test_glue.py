"""GLUE registry, TSV and TFDS readers, and fixed-shape features on the real GLUE files."""

import os
import shutil
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.text import glue
from funnel_tf.text.errors import DataFormatError


@pytest.fixture(scope="module")
def tok(bert_vocab):
    """The process's BERT tokenizer: modules on one worker share it and its traced encoders."""
    from funnel_tf.text.wordpiece import shared_tokenizer
    return shared_tokenizer(str(bert_vocab))


@pytest.fixture(scope="module")
def glue_dir(shared_data):
    return str(shared_data / "glue")


# (task, split, rows, label counts or None for regression/unlabelled) — PROVENANCE.md numbers.
REAL_SPLITS = [
    ("cola", "train", 8551, {"0": 2528, "1": 6023}),
    ("cola", "dev", 1043, {"0": 322, "1": 721}),
    ("sst-2", "train", 50000, {"0": 22084, "1": 27916}),
    ("sst-2", "dev", 872, {"0": 428, "1": 444}),
    ("mrpc", "train", 3667, {"0": 1194, "1": 2473}),
    ("mrpc", "dev", 408, {"0": 129, "1": 279}),
    ("sts-b", "train", 5749, None),
    ("sts-b", "dev", 1500, None),
    ("qqp", "train", 160, {"0": 80, "1": 80}),
    ("mnli", "train", 240, {"contradiction": 80, "entailment": 80, "neutral": 80}),
    ("mnli", "dev_matched", 5, {"contradiction": 3, "entailment": 1, "neutral": 1}),
    ("mnli", "dev_mismatched", 5, {"contradiction": 3, "entailment": 2, "neutral": 0}),
    ("qnli", "train", 320, {"entailment": 160, "not_entailment": 160}),
    ("qnli", "dev", 5463, {"entailment": 2702, "not_entailment": 2761}),
    ("rte", "train", 2490, {"entailment": 1249, "not_entailment": 1241}),
    ("rte", "dev", 277, {"entailment": 146, "not_entailment": 131}),
    ("wnli", "train", 635, {"0": 323, "1": 312}),
    ("wnli", "dev", 71, {"0": 40, "1": 31}),
]


@pytest.mark.parametrize("task,split,rows,counts", REAL_SPLITS)
def test_real_row_counts_and_labels(glue_dir, task, split, rows, counts):
    ex = glue.load_glue(task, glue_dir, split)
    assert len(ex) == rows and ex.num_skipped == 0 and ex.has_labels
    assert (ex.text_b is None) == (task in ("cola", "sst-2"))
    if counts is None:  # STS-B: float scores in [0, 5]
        assert ex.labels.dtype == np.float32
        assert 0.0 <= ex.labels.min() and ex.labels.max() <= 5.0 and ex.labels.std() > 1.0
    else:
        assert ex.labels.dtype == np.int32
        assert ex.label_counts() == counts


def test_kshot_dev_files_and_ax(glue_dir):
    mnli = glue.read_glue_tsv("mnli", os.path.join(glue_dir, "MNLI", "dev_kshot.tsv"),
                              "dev_matched")  # 12-column rows are accepted for MNLI dev too
    assert len(mnli) == 240 and mnli.label_counts()["neutral"] == 80
    ax = glue.load_glue("ax", glue_dir, "test")
    assert len(ax) == 1104 and not ax.has_labels and np.all(ax.labels == -1)
    assert ax.ids[:3] == ["0", "1", "2"]
    assert ax.text_a[0] == "The cat sat on the mat." and ax.text_b[0] == "The cat did not sit on the mat."


def test_quirks_bom_no_header_raw_quotes(glue_dir):
    mrpc = glue.load_glue("mrpc", glue_dir, "train")      # header starts with a UTF-8 BOM
    assert mrpc.text_a[0].startswith('Amrozi accused his brother , whom he called " the witness "')
    assert not any("\ufeff" in t for t in mrpc.text_a)
    cola = glue.load_glue("cola", glue_dir, "train")      # no header: first line is data
    assert cola.ids[0] == "0" and cola.text_a[0].startswith("Our friends won't buy")
    rte = glue.load_glue("rte", glue_dir, "train")   # line 52 (id 50): a field opening with "
    assert rte.ids[50] == "50" and rte.text_a[50].startswith('"Instead of action on crime')
    sst = glue.load_glue("sst-2", glue_dir, "dev")
    assert sst.text_a[0] == "it 's a charming and often affecting journey . "
    stsb = glue.load_glue("sts-b", glue_dir, "dev")
    assert stsb.text_a[0] == "A man with a hard hat is dancing." and stsb.labels[0] == 5.0


def test_registry_is_complete():
    names = {"cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli", "ax"}
    assert set(glue.GLUE_TASKS) == names
    for name, task in glue.GLUE_TASKS.items():
        for split in task.eval_splits + task.test_splits:
            assert split in task.splits and split in task.tfds_splits
        for split in task.test_splits:
            assert task.splits[split].label is None and split in task.submission_files
        assert task.metric in ("mcc", "accuracy", "f1_accuracy", "pearson_spearman")
    assert glue.get_glue_task("STSB").is_regression and glue.get_glue_task("sst2").name == "sst-2"
    # TFDS orders MNLI labels entailment, neutral, contradiction; ours is the original's.
    assert glue.get_glue_task("mnli").tfds_label_map().tolist() == [1, 2, 0]
    assert glue.get_glue_task("wnli").tfds_label_map().tolist() == [0, 1]
    with pytest.raises(KeyError, match="unknown GLUE task"):
        glue.get_glue_task("squad")


def test_features_static_shapes_and_padding(glue_dir, tok):
    ds, ex = glue.glue_dataset("mrpc", "dev", tok, 128, data_dir=glue_dir, batch_size=32,
                               pad_to_multiple_of=32)
    spec = ds.element_spec
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert spec[key].shape == (32, 128) and spec[key].dtype == tf.int32
    assert spec["label"].shape == (32,) and spec["label"].dtype == tf.int32
    assert spec["example_weight"].dtype == tf.float32
    batches = list(ds.as_numpy_iterator())
    weights = np.concatenate([b["example_weight"] for b in batches])
    index = np.concatenate([b["example_index"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    assert len(weights) == 416 and weights.sum() == 408       # 408 real + 8 padding
    assert index[:408].tolist() == list(range(408)) and np.all(index[408:] == -1)
    assert labels[:408].tolist() == ex.labels.tolist()

    first = batches[0]
    n = int(first["attention_mask"][0].sum())
    ids_a, ids_b = tok.encode(ex.text_a[0]), tok.encode(ex.text_b[0])
    expected = [tok.cls_id] + ids_a + [tok.sep_id] + ids_b + [tok.sep_id]
    assert first["input_ids"][0, :n].tolist() == expected          # fits in 128, no truncation
    assert first["token_type_ids"][0, :n].tolist() == [2] + [0] * (len(ids_a) + 1) + [1] * (
        len(ids_b) + 1)
    assert np.all(first["input_ids"][0, n:] == tok.pad_id)
    pad = batches[-1]
    assert pad["input_ids"][-1, :3].tolist() == [tok.cls_id, tok.sep_id, tok.sep_id]


def test_regression_single_and_truncation(glue_dir, tok):
    ds, _ = glue.glue_dataset("sts-b", "dev", tok, 16, data_dir=glue_dir, batch_size=8)
    batch = next(iter(ds))
    assert batch["label"].dtype == tf.float32 and batch["input_ids"].shape == (8, 16)
    assert np.all(batch["attention_mask"].numpy().sum(1) <= 16)
    ds, ex = glue.glue_dataset("sst-2", "dev", tok, 8, data_dir=glue_dir)
    first = next(iter(ds))
    assert first["input_ids"].numpy().tolist() == (
        [tok.cls_id] + tok.encode(ex.text_a[0])[:6] + [tok.sep_id])
    assert set(first["token_type_ids"].numpy().tolist()) == {0, 2}


def _write(path, text, encoding="utf-8"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)
    return str(path)


def test_test_split_unlabelled(tmp_path):
    _write(tmp_path / "CoLA" / "test.tsv", "index\tsentence\n0\tBill left.\n1\t\"Quoted\" text\n")
    ex = glue.load_glue("cola", str(tmp_path), "test")
    assert ex.ids == ["0", "1"] and not ex.has_labels and ex.labels.tolist() == [-1, -1]
    assert ex.text_a[1] == '"Quoted" text'                       # QUOTE_NONE: quotes kept
    _write(tmp_path / "STS-B" / "test.tsv",
           "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\n"
           "0\tmain\tf\t2012\t1\ts\ts\tA man.\tA person.\n")
    stsb = glue.load_glue("sts-b", str(tmp_path), "test")
    assert np.isnan(stsb.labels[0]) and stsb.text_b == ["A person."]


@pytest.mark.parametrize("task,content,line,match", [
    ("rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\n", 3,
     "expected 4 tab-separated columns, found 3"),
    ("rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n", 2, "label 'maybe'"),
    ("cola", "src\t1\t\tok\nsrc\t2\t*\tbad label\n", 2, "label '2'"),
    ("sts-b", "index\tg\tf\ty\to\ts1\ts2\tsentence1\tsentence2\tscore\n"
              "0\tg\tf\ty\to\ts\ts\ta\tb\tabc\n", 2, "not a number"),
    ("sts-b", "index\tg\tf\ty\to\ts1\ts2\tsentence1\tsentence2\tscore\n"
              "0\tg\tf\ty\to\ts\ts\ta\tb\t7.5\n", 2, "outside"),
    ("sst-2", "0\tno header here\n", 1, "expected a header starting with 'sentence'"),
])
def test_malformed_rows_name_file_and_line(tmp_path, task, content, line, match):
    folder = glue.get_glue_task(task).folder
    path = _write(tmp_path / folder / "train.tsv", content)
    with pytest.raises(DataFormatError, match=match) as info:
        glue.load_glue(task, str(tmp_path), "train")
    assert info.value.path == path and info.value.line == line
    assert f"train.tsv:{line}" in str(info.value)


def test_skip_malformed_counts(tmp_path):
    _write(tmp_path / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n"
           "0\ta\tb\tentailment\n1\tonly two\n2\ta\tb\tbogus\n3\tc\td\tnot_entailment\n")
    ex = glue.load_glue("rte", str(tmp_path), "dev", skip_malformed=True)
    assert len(ex) == 2 and ex.num_skipped == 2 and ex.ids == ["0", "3"]
    assert ex.labels.tolist() == [0, 1]


def test_undecodable_bytes_and_missing_file(tmp_path):
    path = tmp_path / "WNLI" / "dev.tsv"
    os.makedirs(path.parent)
    path.write_bytes(b"index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1\n1\t\xff\xfe\tb\t0\n")
    with pytest.raises(DataFormatError, match="not valid utf-8") as info:
        glue.load_glue("wnli", str(tmp_path), "dev")
    assert info.value.line == 3
    with pytest.raises(FileNotFoundError, match="dev_matched.tsv"):
        glue.load_glue("mnli", str(tmp_path), "dev_matched")


# ------------------------------------------------------------------------------------- TFDS
@pytest.fixture(scope="module")
def tfds_rte(tmp_path_factory, glue_dir):
    """(TFDS data_dir, GLUE TSV dir): glue/rte prepared by TFDS's own GLUE builder (no network)
    from the shared RTE files (train cut to its first 300 rows: the same reader, less to write)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import tensorflow_datasets.core.dataset_builder as dbm

    root = tmp_path_factory.mktemp("tfds")
    extracted = root / "extracted" / "RTE"
    os.makedirs(extracted)
    train_rows = open(os.path.join(glue_dir, "RTE", "train.tsv"), encoding="utf-8",
                      newline="").read().split("\n")
    _write(extracted / "train.tsv", "\n".join(train_rows[:301]) + "\n")
    shutil.copy(os.path.join(glue_dir, "RTE", "dev.tsv"), extracted / "dev.tsv")
    dev_rows = open(os.path.join(glue_dir, "RTE", "dev.tsv"), encoding="utf-8").read().split("\n")
    _write(extracted / "test.tsv", "index\tsentence1\tsentence2\n" + "\n".join(
        "\t".join(r.split("\t")[:3]) for r in dev_rows[1:11]) + "\n")
    data_dir = root / "data"
    builder = tfds.builder("glue/rte", data_dir=str(data_dir))
    try:  # code_path=None: skip TFDS's checksum-file lookup (needs importlib_resources)
        with mock.patch.object(tfds.download.DownloadManager, "download_and_extract",
                               lambda self, url: str(root / "extracted")), \
                mock.patch.object(dbm.DatasetBuilder, "code_path", None):
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    except Exception as e:  # pragma: no cover - depends on the installed TFDS internals
        pytest.skip(f"cannot prepare a local glue/rte with this TFDS version: {e!r}")
    return str(data_dir), str(root / "extracted")


def test_tfds_matches_tsv(tfds_rte, tok):
    tfds_rte, tsv_dir = tfds_rte
    for split, rows in (("train", 300), ("dev", 277)):
        from_tsv = glue.load_glue("rte", tsv_dir, split)
        from_tfds = glue.load_glue_tfds("rte", split, tfds_rte)
        assert len(from_tsv) == rows
        assert from_tfds.text_a == from_tsv.text_a and from_tfds.text_b == from_tsv.text_b
        assert from_tfds.labels.tolist() == from_tsv.labels.tolist()
    test = glue.load_glue_tfds("rte", "test", tfds_rte)
    assert len(test) == 10 and not test.has_labels and np.all(test.labels == -1)
    # 128: the length test_features_static_shapes_and_padding's pairs use (one encoder trace).
    ds, ex = glue.glue_dataset("rte", "dev", tok, 128, tfds_data_dir=tfds_rte, batch_size=16,
                               pad_to_multiple_of=16)
    assert ds.element_spec["input_ids"].shape == (16, 128) and len(ex) == 277
    assert sum(float(b["example_weight"].numpy().sum()) for b in ds) == 277


def test_tfds_unprepared_is_a_clear_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="not prepared"):
        glue.load_glue_tfds("cola", "train", str(tmp_path))
    with pytest.raises(ValueError, match="exactly one"):
        glue.glue_dataset("cola", "train", None, data_dir="a", tfds_data_dir="b")
