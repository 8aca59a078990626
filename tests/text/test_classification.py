"""Text-classification readers (AG News, IMDB, Zhang et al. CSVs, any CSV/TSV) and the encoder."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.text import benchmarks
from funnel_tf.text import classification as cls
from funnel_tf.text.errors import DataFormatError


@pytest.fixture(scope="module")
def tok(bert_vocab):
    """The process's BERT tokenizer: modules on one worker share it and its traced encoders."""
    from funnel_tf.text.wordpiece import shared_tokenizer
    return shared_tokenizer(str(bert_vocab))


def _write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return str(path)


@pytest.mark.parametrize("raw,clean", [
    ("Great movie.<br /><br />Loved it", "Great movie. Loved it"),
    ("He said &quot;hi&quot;", 'He said "hi"'),
    ('see <a href="http://x.y/z">this link</a> now', "see this link now"),
    ("dangling <a href=oops", "dangling oops"),
    ("line one\\nline two\\third", "line one line two third"),   # the CSVs' backslash newlines
    ("<p>para  one\t\n two", "para one two"),
])
def test_clean_web_text(raw, clean):
    assert cls.clean_web_text(raw) == clean


def test_ag_news_real_file(shared_data):
    ex = benchmarks.load_text_classification("ag_news", str(shared_data / "textcls" / "ag_news_csv"),
                                      "test")
    assert len(ex) == 7600 and ex.num_skipped == 0
    assert ex.label_counts() == {"1": 1900, "2": 1900, "3": 1900, "4": 1900}
    assert ex.text_b is not None                       # title = A, description = B
    assert ex.labels[0] == 2 and ex.text_a[0] == "Fears for T N pension after talks"
    assert ex.text_b[0].startswith("Unions representing workers at Turner Newall say")
    # "...A second\team of rocketeers..." — the backslash newline quirk becomes a space.
    assert "A second team of rocketeers" in ex.text_b[1]
    assert not any("\\" in t for t in ex.text_a + ex.text_b)
    assert ex.ids[-1] == "test-7600"


def test_imdb_sample_csv(shared_data):
    folder = shared_data / "textcls" / "imdb_fastbert_sample"
    train = benchmarks.load_text_classification("imdb", str(folder / "train_sample.csv"))
    val = benchmarks.read_imdb_csv(str(folder / "val_sample.csv"))
    assert len(train) == 100 and train.label_counts() == {"neg": 50, "pos": 50}
    assert len(val) == 50 and val.label_counts() == {"neg": 32, "pos": 18}
    assert train.text_b is None
    assert not any("<br" in t for t in train.text_a)        # raw file has 59 lines with <br />
    assert train.text_a[0].startswith("This rather poorly named western series won an Emmy")


def test_imdb_folder_layout(tmp_path):
    for split, label, name, text in [("train", "pos", "1_9.txt", "Fine.<br />Really"),
                                     ("train", "neg", "0_2.txt", "Bad"),
                                     ("train", "pos", "0_10.txt", "Great"),
                                     ("test", "neg", "5_1.txt", "Meh"),
                                     ("test", "pos", "6_8.txt", "Nice")]:
        _write(tmp_path / "aclImdb" / split / label / name, text)
    _write(tmp_path / "aclImdb" / "train" / "pos" / "urls.list", "ignored")
    ex = benchmarks.load_text_classification("imdb", str(tmp_path / "aclImdb"), "train")
    assert ex.ids == ["neg/0_2.txt", "pos/0_10.txt", "pos/1_9.txt"]
    assert ex.labels.tolist() == [0, 1, 1] and ex.text_a[2] == "Fine. Really"
    assert len(benchmarks.load_text_classification("imdb", str(tmp_path / "aclImdb"), "dev")) == 2
    os.remove(tmp_path / "aclImdb" / "test" / "pos" / "6_8.txt")
    os.rmdir(tmp_path / "aclImdb" / "test" / "pos")
    with pytest.raises(FileNotFoundError, match="expected aclImdb layout"):
        benchmarks.load_text_classification("imdb", str(tmp_path / "aclImdb"), "test")


@pytest.mark.parametrize("task,row,pair,k", [
    ("yelp2", '"2","Good food.\\nNice staff."\n', False, 2),
    ("yelp5", '"5","Superb"\n', False, 5),
    ("dbpedia", '"14","Some Book","A book, about ""quotes""."\n', True, 14),
    ("amazon5", '"3","Okay","Works as ""expected"""\n', True, 5),
    ("amazon2", '"1","Broke","Stopped after a day"\n', True, 2),
])
def test_zhang_formats(tmp_path, task, row, pair, k):
    _write(tmp_path / "train.csv", row)
    ex = benchmarks.load_text_classification(task, str(tmp_path), "train")
    spec = benchmarks.get_text_cls_task(task)
    assert len(ex) == 1 and (ex.text_b is not None) == pair and spec.is_pair == pair
    assert len(ex.label_names) == k and ex.labels[0] == int(row[1:row.index('"', 1)]) - 1
    if task == "dbpedia":
        assert ex.text_b[0] == 'A book, about "quotes".'
    if task == "yelp2":
        assert ex.text_a[0] == "Good food. Nice staff."


def test_multiline_record_and_errors_name_the_line(tmp_path):
    path = _write(tmp_path / "test.csv", '"1","Title","spans\ntwo lines"\n"2","T"\n')
    with pytest.raises(DataFormatError, match="expected 3 columns, found 2") as info:
        benchmarks.load_text_classification("ag_news", str(tmp_path), "test")
    assert info.value.line == 3 and info.value.path == path       # record 2 starts on line 3
    _write(tmp_path / "test.csv", '"1","a","b"\n"5","a","b"\n')
    with pytest.raises(DataFormatError, match=r"label '5' not in 1..4") as info:
        benchmarks.load_text_classification("ag_news", str(tmp_path), "test")
    assert info.value.line == 2
    _write(tmp_path / "test.csv", '"1","a","b"\n"2","a"b,"c"\n')
    with pytest.raises(DataFormatError, match="malformed CSV") as info:
        benchmarks.load_text_classification("ag_news", str(tmp_path), "test")
    assert info.value.line == 2
    (tmp_path / "test.csv").write_bytes(b'"1","a","b"\n"2","caf\xe9","c"\n')   # Latin-1 byte
    with pytest.raises(DataFormatError, match="not valid utf-8") as info:
        benchmarks.load_text_classification("ag_news", str(tmp_path), "test")
    assert info.value.line == 2
    _write(tmp_path / "test.csv", '"1","a","b"\n"9","a","b"\n"2","x"\n"3","c","d"\n')
    ex = benchmarks.load_text_classification("ag_news", str(tmp_path), "test", skip_malformed=True)
    assert len(ex) == 2 and ex.num_skipped == 2 and ex.labels.tolist() == [0, 2]
    with pytest.raises(FileNotFoundError):
        benchmarks.load_text_classification("yelp5", str(tmp_path), "train")
    with pytest.raises(KeyError, match="unknown text-classification task"):
        benchmarks.get_text_cls_task("sst-5")


def test_any_labelled_csv_tsv(tmp_path):
    tsv = _write(tmp_path / "data.tsv", 'id\ttext\tlabel\n7\tSaid "hi"\tspam\n8\tok\tham\n')
    ex = cls.read_labelled_file(tsv, text_a_column="text", label_column="label", id_column="id")
    assert ex.label_names == ("ham", "spam") and ex.labels.tolist() == [1, 0]
    assert ex.text_a[0] == 'Said "hi"' and ex.ids == ["7", "8"]     # TSV: quotes kept raw
    unl = cls.read_labelled_file(tsv, text_a_column=1, label_column=None,
                                 label_names=ex.label_names)
    assert not unl.has_labels and unl.labels.tolist() == [-1, -1]
    csv_path = _write(tmp_path / "pairs.csv", 'a,b,score\n"x, y",z,0.5\nu,v,4\n')
    reg = cls.read_labelled_file(csv_path, text_a_column=0, text_b_column=1, label_column=2,
                                 regression=True)
    assert reg.is_regression and reg.labels.dtype == np.float32
    assert reg.labels.tolist() == [0.5, 4.0] and reg.text_a[0] == "x, y"
    bad = _write(tmp_path / "bad.csv", "t,l\nfine,1\nbroken\nnot,a number\n")
    with pytest.raises(DataFormatError, match="expected 2 columns, found 1") as info:
        cls.read_labelled_file(bad, text_a_column=0, label_column=1, regression=True)
    assert info.value.line == 3
    with pytest.raises(DataFormatError, match="not a number") as info:
        cls.read_labelled_file(_write(tmp_path / "bad2.csv", "t,l\nx,abc\n"), text_a_column=0,
                               label_column=1, regression=True)
    assert info.value.line == 2
    skipped = cls.read_labelled_file(bad, text_a_column=0, label_column=1, regression=True,
                                     skip_malformed=True)
    assert len(skipped) == 1 and skipped.num_skipped == 2
    with pytest.raises(DataFormatError, match="label 'x' not in"):
        cls.read_labelled_file(_write(tmp_path / "c.csv", "t,l\na,x\n"), text_a_column=0,
                               label_column=1, label_names=["y", "z"])


def test_encode_pairs_padding_and_shapes(shared_data, tok):
    full = benchmarks.load_text_classification("ag_news",
                                               str(shared_data / "textcls" / "ag_news_csv"), "test")
    n = 300  # real pairs, a fraction of the 7600 (the reader is checked on all of them above)
    ex = dataclasses.replace(full, text_a=full.text_a[:n], text_b=full.text_b[:n],
                             labels=full.labels[:n], ids=full.ids[:n])
    ds = cls.encode_text_examples(ex, tok, 64, batch_size=128, pad_to_multiple_of=128)
    assert ds.element_spec["input_ids"].shape == (128, 64)
    total = weight = longest = 0
    for i, batch in enumerate(ds.as_numpy_iterator()):
        if i == 0:
            first = {k: v[0] for k, v in batch.items()}  # unshuffled: example 0
        total += len(batch["label"])
        weight += batch["example_weight"].sum()
        longest = max(longest, batch["attention_mask"].sum(1).max())
    assert total == 384 and weight == n                          # 300 padded up to 3 * 128
    assert longest == 64                                         # longer pairs are truncated
    assert first["example_index"] == 0 and first["label"] == ex.labels[0]
    ids_a = tok.encode(ex.text_a[0])
    assert first["input_ids"][:len(ids_a) + 2].tolist() == [tok.cls_id] + ids_a + [tok.sep_id]
    types = first["token_type_ids"]
    assert types[0] == 2 and types[1] == 0 and 1 in types[len(ids_a) + 2:]
    assert tok.id_to_token(first["input_ids"][1:5]) == ["fears", "for", "t", "n"]


def test_encode_shuffle_is_a_seeded_permutation(tok):
    ex = cls.TextExamples([f"text {i}" for i in range(50)], None, np.arange(50) % 3,
                          [str(i) for i in range(50)], ("a", "b", "c"))
    run = lambda: [int(x["example_index"]) for x in
                   cls.encode_text_examples(ex, tok, 8, shuffle=True, seed=3).as_numpy_iterator()]
    order = run()
    assert sorted(order) == list(range(50)) and order != list(range(50)) and order == run()
    data = cls.dataset_to_numpy(cls.encode_text_examples(ex, tok, 8))
    assert data["input_ids"].shape == (50, 8) and data["label"].tolist() == ex.labels.tolist()
    reg = cls.TextExamples(["a"], ["b"], np.array([2.5]), ["0"], None)
    first = next(iter(cls.encode_text_examples(reg, tok, 8)))
    assert first["label"].dtype == tf.float32 and float(first["label"]) == 2.5
    with pytest.raises(ValueError, match="no room"):
        cls.encode_text_examples(reg, tok, 3)
