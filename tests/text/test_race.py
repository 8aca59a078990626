"""RACE reader: real files, QA construction, 4-way features, malformed files."""

import json
import os

import numpy as np
import pytest

from funnel_tf.text import race
from funnel_tf.text.errors import DataFormatError


@pytest.fixture(scope="module")
def tok(bert_vocab):
    """The process's BERT tokenizer: modules on one worker share it and its traced encoders."""
    from funnel_tf.text.wordpiece import shared_tokenizer
    return shared_tokenizer(str(bert_vocab))


@pytest.fixture(scope="module")
def race_dir(shared_data):
    return str(shared_data / "race")


@pytest.mark.parametrize("split,questions,middle,high", [
    ("train", 22, 10, 12), ("dev", 17, 11, 6), ("test", 22, 14, 8)])
def test_real_counts(race_dir, split, questions, middle, high):
    ex = race.load_race(race_dir, split)
    assert len(ex) == questions and ex.num_skipped == 0
    assert ex.level_counts() == {"middle": middle, "high": high}
    assert len({i.split("#")[0] for i in ex.ids}) == 5                 # 5 files per split
    assert ex.labels.dtype == np.int32 and set(ex.labels.tolist()) <= {0, 1, 2, 3}
    assert all(len(q) == 4 for q in ex.qa)


def test_labels_and_qa_follow_the_file(race_dir, shared_data):
    ex = race.load_race(race_dir, "train")
    i = ex.ids.index("train/high/123.txt#0")
    data = json.load(open(shared_data / "race" / "RACE" / "train" / "high" / "123.txt"))
    assert ex.labels[i] == "ABCD".index(data["answers"][0]) == 2
    # "Hearing Mother's shouts, the boy  _  ." — the blank is filled with each option.
    assert ex.qa[i][2] == "Hearing Mother's shouts, the boy  swam back towards the shore  ."
    assert ex.articles[i] == data["article"] and ex.levels[i] == "high"
    j = ex.ids.index("train/high/123.txt#1")
    assert ex.qa[j][0] == ("Which of the following statements is true according to the text? "
                           "A crocodile attacked him when the boy and his mother were swimming.")


def test_build_qa():
    assert race.build_qa("The boy _ home.", "went") == "The boy went home."
    assert race.build_qa("Why?", "Because.") == "Why? Because."


def test_features_layout(race_dir, tok):
    ex = race.load_race(race_dir, "dev")
    ds = race.encode_race_examples(ex, tok, 64, max_qa_length=8, batch_size=4,
                                   pad_to_multiple_of=4)
    spec = ds.element_spec
    assert spec["input_ids"].shape == (4, 4, 64) and spec["label"].shape == (4,)
    batches = list(ds.as_numpy_iterator())
    weights = np.concatenate([b["example_weight"] for b in batches])
    assert len(weights) == 20 and weights.sum() == 17
    first = batches[0]
    assert first["label"].tolist() == ex.labels[:4].tolist()
    assert first["is_high"].tolist() == [int(lvl == "high") for lvl in ex.levels[:4]]
    passage = tok.encode(ex.articles[0])
    for opt in range(4):
        qa = tok.encode(ex.qa[0][opt])[-8:]                       # QA keeps its LAST 8 tokens
        ids = first["input_ids"][0, opt]
        n_p = 64 - 3 - len(qa)                                    # passage cut at its end
        assert ids.tolist() == [tok.cls_id] + qa + [tok.sep_id] + passage[:n_p] + [tok.sep_id]
        assert first["token_type_ids"][0, opt].tolist() == [2] + [0] * (len(qa) + 1) + [1] * (
            n_p + 1)
        assert first["attention_mask"][0, opt].sum() == 64


def test_full_length_defaults(race_dir, tok):
    ex = race.load_race(race_dir, "test")
    ds = race.encode_race_examples(ex, tok)          # seq 512, QA <= 128
    item = next(iter(ds))
    assert item["input_ids"].shape == (4, 512)
    qa_len = [int(np.argmax(item["input_ids"][o].numpy() == tok.sep_id)) - 1 for o in range(4)]
    assert qa_len == [min(len(tok.encode(q)), 128) for q in ex.qa[0]]
    with pytest.raises(ValueError, match="max_qa_length"):
        race.encode_race_examples(ex, tok, 64, max_qa_length=61)


def _race_file(root, name, payload, split="dev", level="middle"):
    folder = os.path.join(root, split, level)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(payload if isinstance(payload, str) else json.dumps(payload))
    return path


GOOD = {"answers": ["B"], "options": [["a", "b", "c", "d"]], "questions": ["Q?"],
        "article": "Text.", "id": "middle1.txt"}


@pytest.mark.parametrize("payload,match,line,qid", [
    ('{"answers": ["A"],\n "options": [[1, 2}', "bad JSON", 2, None),
    ({**GOOD, "options": [["a", "b", "c"]]}, "expected 4 option strings", None, "#0"),
    ({**GOOD, "answers": ["E"]}, "not one of A-D", None, "#0"),
    ({**GOOD, "answers": ["A", "B"]}, "do not line up", None, None),
    ({k: v for k, v in GOOD.items() if k != "article"}, r"missing key\(s\) \['article'\]",
     None, None),
])
def test_malformed_files(tmp_path, payload, match, line, qid):
    _race_file(str(tmp_path), "1.txt", GOOD)
    path = _race_file(str(tmp_path), "2.txt", payload)
    _race_file(str(tmp_path), "3.txt", GOOD, level="high")
    with pytest.raises(DataFormatError, match=match) as info:
        race.load_race(str(tmp_path), "dev")
    assert info.value.path == path and info.value.line == line
    if qid:
        assert info.value.example_id == "dev/middle/2.txt" + qid
    ex = race.load_race(str(tmp_path), "dev", skip_malformed=True)
    assert len(ex) == 2 and ex.num_skipped == 1 and ex.labels.tolist() == [1, 1]


def test_missing_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="RACE split folder"):
        race.load_race(str(tmp_path), "train")
