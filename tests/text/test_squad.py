"""SQuAD: JSON parsing, in-graph windowed features, char offsets, answer round trip, postprocess."""

import json

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.text import squad, squad_json
from funnel_tf.text.errors import DataFormatError


@pytest.fixture(scope="module")
def tok(bert_vocab):
    """The process's BERT tokenizer: modules on one worker share it and its traced encoders."""
    from funnel_tf.text.wordpiece import shared_tokenizer
    return shared_tokenizer(str(bert_vocab))


@pytest.fixture(scope="module")
def v1(shared_data):
    return squad_json.read_squad(str(shared_data / "squad" / "v1.1" / "train-v1.1.head.json"))


@pytest.fixture(scope="module")
def v2(shared_data):
    return squad_json.read_squad(str(shared_data / "squad" / "v2.0" / "dev-v2.0.first5articles.json"))


# The v2 windows every v2 test reads (many windows per question): one build for the module.
V2_WINDOWS = dict(seq_len=96, doc_stride=32, max_query_length=24)


@pytest.fixture(scope="module")
def v2_feats(v2, tok):
    return squad.build_squad_features(v2.examples, tok, **V2_WINDOWS)


def _first_examples(feats, n):
    """The windows of the first `n` examples (features are in example order)."""
    rows = int(np.searchsorted(feats.arrays["example_index"], n))
    return squad.SquadFeatures({k: v[:rows] for k, v in feats.arrays.items()}, feats.seq_len,
                               feats.cls_id, feats.sep_id, feats.pad_id)


def test_real_files_parse(v1, v2):
    assert len(v1) == 3807 and v1.num_skipped == 0 and not v1.allow_impossible
    assert len({ex.title for ex in v1.examples}) == 11
    assert len({ex.context for ex in v1.examples}) == 583
    assert v1.examples[0].answers == [("Saint Bernadette Soubirous", 515)]
    assert len(v2) == 1407 and v2.allow_impossible and v2.version == "v2.0"
    assert sum(ex.is_impossible for ex in v2.examples) == 702
    assert all(len(ex.answers) >= 1 for ex in v2.examples if not ex.is_impossible)
    assert all(ex.answer_span == (-1, -1) for ex in v2.examples if ex.is_impossible)


def _round_trip(data, features):
    """Per answerable question: does some window's gold span decode to the exact answer?"""
    a = features.arrays
    exact, mismatched, missing = 0, [], []
    for e, ex in enumerate(data.examples):
        if ex.is_impossible:
            continue
        rows = np.where((a["example_index"] == e) & (a["is_impossible"] == 0))[0]
        if not len(rows):
            missing.append(ex.qas_id)
            continue
        texts = {ex.context[a["token_char_start"][r, a["start_positions"][r]]:
                            a["token_char_end"][r, a["end_positions"][r]]] for r in rows}
        if texts == {ex.answers[0][0]}:
            exact += 1
        else:
            mismatched.append((ex.qas_id, ex.answers[0][0], texts))
    return exact, mismatched, missing


@pytest.mark.slow  # the default suite's round trip: test_gold_spans_round_trip_v2_many_windows
def test_gold_spans_round_trip_v1(v1, tok):
    feats = squad.build_squad_features(v1.examples, tok, seq_len=384, doc_stride=128)
    assert len(feats) == 3898                        # 3807 questions, 91 extra windows
    exact, mismatched, missing = _round_trip(v1, feats)
    # Measured: 3785 / 3807 exact. The 22 others are answers that start or end inside a
    # WordPiece token ("Rober" in "Roberson", "7" in "1817", "Tibet" in "Tibetan"): the token
    # span necessarily covers the whole token, so the decoded text strictly contains the answer.
    assert not missing and exact == 3807 - len(mismatched) and len(mismatched) <= 25
    for _, answer, texts in mismatched:
        assert len(texts) == 1 and answer in next(iter(texts)) and answer != next(iter(texts))


def test_gold_spans_round_trip_v2_many_windows(v2, v2_feats):
    feats = v2_feats
    a = feats.arrays
    assert len(feats) > 2.5 * len(v2)                # long paragraphs → several windows each
    exact, mismatched, missing = _round_trip(v2, feats)
    assert not missing and exact >= 703 and exact + len(mismatched) == 705
    for _, answer, texts in mismatched:  # answers inside a WordPiece token (as in v1's)
        assert len(texts) == 1 and answer in next(iter(texts)) and answer != next(iter(texts))
    impossible = [e for e, ex in enumerate(v2.examples) if ex.is_impossible]
    rows = np.isin(a["example_index"], impossible)
    assert np.all(a["is_impossible"][rows] == 1) and np.all(a["start_positions"][rows] == 0)
    # Every paragraph token is "max context" in exactly one window of its question.
    for e in (0, 1, 500):
        r = np.where(a["example_index"] == e)[0]
        starts = a["token_char_start"][r]
        covered = {}
        for row, flags in zip(starts, a["token_is_max_context"][r]):
            for c, f in zip(row, flags):
                if c >= 0:
                    covered[c] = covered.get(c, 0) + int(f)
        assert set(covered.values()) == {1}


def test_feature_layout(v1, tok):
    ex = v1.examples[0]
    seq, stride = V2_WINDOWS["seq_len"], V2_WINDOWS["doc_stride"]  # the v2 windows' traces
    feats = squad.build_squad_features([ex], tok, **V2_WINDOWS)
    a = feats.arrays
    q = tok.encode(ex.question)
    doc = tok.encode(ex.context)
    assert len(q) < V2_WINDOWS["max_query_length"]    # the whole question
    room = seq - len(q) - 3
    k = len(feats)
    assert k == -(-(len(doc) - room) // stride) + 1 and k > 2   # windows every 32 tokens to the end
    for w in range(k):
        n = min(room, len(doc) - stride * w)
        expect = [tok.cls_id] + q + [tok.sep_id] + doc[stride * w:stride * w + n] + [tok.sep_id]
        assert a["input_ids"][w, :len(expect)].tolist() == expect
        assert np.all(a["input_ids"][w, len(expect):] == tok.pad_id)
        assert a["attention_mask"][w].sum() == len(expect)
        assert a["token_type_ids"][w, :len(q) + 2].tolist() == [2] + [1] * (len(q) + 1)
        assert np.all(a["token_type_ids"][w, len(q) + 2:] == 0)
        assert a["p_mask"][w].tolist() == [0] + [1] * (len(q) + 1) + [0] * n + [1] * (
            seq - len(q) - 2 - n)
        chars = a["token_char_start"][w]
        assert np.all(chars[:len(q) + 2] == -1) and np.all(chars[len(q) + 2 + n:] == -1)
    assert a["is_impossible"].tolist().count(0) >= 1


def _reference_max_context(num_tokens, room, stride):
    """The original's `_check_is_max_context`, on plain Python lists."""
    spans, start = [], 0
    while True:
        length = min(room, num_tokens - start)
        spans.append((start, length))
        if start + length >= num_tokens:
            break
        start += min(length, stride)
    best = []
    for pos in range(num_tokens):
        scores = [(min(pos - s, s + n - 1 - pos) + 0.01 * n, i) for i, (s, n) in enumerate(spans)
                  if s <= pos < s + n]
        best.append(max(scores, key=lambda x: (x[0], -x[1]))[1])
    return spans, best


@pytest.mark.parametrize("num_tokens,seq_len,stride", [(0, 16, 4), (5, 16, 4), (40, 16, 4),
                                                       (41, 20, 50), (100, 32, 7)])
def test_windows_match_reference(num_tokens, seq_len, stride):
    q = tf.constant([7, 8, 9], tf.int32)
    ctx = tf.range(1000, 1000 + num_tokens, dtype=tf.int32)
    starts = tf.range(num_tokens, dtype=tf.int32) * 3
    out = squad.make_windows(q, ctx, starts, starts + 2, tf.constant(-1), tf.constant(-1),
                             seq_len=seq_len, doc_stride=stride, cls_id=1, sep_id=2)
    spans, best = _reference_max_context(num_tokens, seq_len - 6, stride)
    ids = out["input_ids"].numpy()
    assert ids.shape == (len(spans), seq_len)
    for w, (s, n) in enumerate(spans):
        assert ids[w, 5:5 + n].tolist() == list(range(1000 + s, 1000 + s + n))
        flags = out["token_is_max_context"].numpy()[w, 5:5 + n]
        assert flags.tolist() == [int(best[s + i] == w) for i in range(n)]
    assert np.all(out["is_impossible"].numpy() == 1)


UNICODE_CONTEXT = "Café Müller — 東京 in naïve 😀 Ärger, x\u200by."
UNICODE_ANSWERS = ("Müller", "東京", "naïve", "Ärger", "😀", "x\u200by")
CONSTRAINTS = squad_json.SquadExample("id1", "Which?", "alpha beta gamma delta epsilon",
                                 [("gamma", 11)])


@pytest.fixture(scope="module")
def short_feats(tok):
    """One window per question, for the constraints example (row 0) and the unicode questions
    (rows 1...): one build (trace and iterator) for both tests."""
    examples = [CONSTRAINTS] + [
        squad_json.SquadExample(f"q{i}", "Where?", UNICODE_CONTEXT, [(ans, UNICODE_CONTEXT.index(ans))])
        for i, ans in enumerate(UNICODE_ANSWERS)]
    feats = squad.build_squad_features(examples, tok, seq_len=32, doc_stride=8,
                                       max_query_length=24)
    assert feats["example_index"].tolist() == list(range(len(examples)))
    return feats


def test_unicode_char_offsets(short_feats):
    context, a = UNICODE_CONTEXT, short_feats.arrays
    for row, answer in enumerate(UNICODE_ANSWERS, start=1):
        s, e = a["start_positions"][row], a["end_positions"][row]
        assert context[a["token_char_start"][row, s]:a["token_char_end"][row, e]] == answer


def test_postprocess_oracle_and_null(v2, v2_feats):
    examples = v2.examples[:60]
    feats = _first_examples(v2_feats, 60)
    a = feats.arrays
    n, s = len(feats), feats.seq_len
    assert n > 60 and s == 96                          # several windows for some questions
    start = np.full([n + 5, s], -5.0, np.float32)      # + 5 rows of eval padding to ignore
    end = np.full([n + 5, s], -5.0, np.float32)
    start[np.arange(n), a["start_positions"]] = 5.0
    end[np.arange(n), a["end_positions"]] = 5.0
    cls_logits = np.where(a["is_impossible"] == 1, 3.0, -3.0)
    # Null odds = min over a question's windows: answerable questions have one window at -3.
    preds, odds = squad.postprocess_predictions(examples, feats, start, end,
                                                cls_logits=np.concatenate([cls_logits, [9] * 5]),
                                                allow_impossible=True)
    for ex in examples:
        if ex.is_impossible:
            assert preds[ex.qas_id] == "" and odds[ex.qas_id] == 3.0
        else:
            assert preds[ex.qas_id] == ex.answers[0][0] and odds[ex.qas_id] == -3.0
    raw, _ = squad.postprocess_predictions(examples, feats, start, end, cls_logits=cls_logits,
                                           null_threshold=None)
    assert all(raw[ex.qas_id] for ex in examples)      # best span even for impossible ones
    # Without cls logits: odds = CLS score - best span score.
    _, odds2 = squad.postprocess_predictions(examples, feats, start, end, null_threshold=None)
    answerable = next(ex for ex in examples if not ex.is_impossible)
    assert odds2[answerable.qas_id] == pytest.approx(-10.0 - 10.0)


def test_postprocess_constraints(short_feats):
    ex = CONSTRAINTS
    feats = _first_examples(short_feats, 1)
    a = feats.arrays
    assert len(feats) == 1
    doc = np.where(a["token_char_start"][0] >= 0)[0]          # the five paragraph positions
    def logits(pairs):
        start = np.full([1, 32], -9.0, np.float32)
        end = np.full([1, 32], -9.0, np.float32)
        start[0, 1] = end[0, 1] = 50.0                          # query token: never valid
        start[0, doc[2]], end[0, doc[2]] = 4.0, 4.0             # "gamma"
        for i, j in pairs:
            start[0, doc[i]], end[0, doc[j]] = 8.0, 8.0
        return start, end

    start, end = logits([(3, 1)])                               # end before start: invalid
    preds, _ = squad.postprocess_predictions([ex], feats, start, end)
    assert preds == {"id1": "gamma"}
    start, end = logits([(0, 4)])                               # 5 tokens
    preds, _ = squad.postprocess_predictions([ex], feats, start, end, max_answer_length=2)
    assert preds == {"id1": "gamma"}
    preds, _ = squad.postprocess_predictions([ex], feats, start, end, max_answer_length=30)
    assert preds == {"id1": "alpha beta gamma delta epsilon"}
    with pytest.raises(ValueError, match="do not cover"):
        squad.postprocess_predictions([ex], feats, start[:, :16], end[:, :16])


def test_eval_and_train_datasets_have_static_shapes(v2, v2_feats, tok):
    feats = _first_examples(v2_feats, 30)
    ds = feats.to_dataset(batch_size=8, pad_to_multiple_of=8)
    spec = ds.element_spec
    assert spec["input_ids"].shape == (8, 96) and spec["start_positions"].shape == (8,)
    batches = list(ds.as_numpy_iterator())
    weights = np.concatenate([b["example_weight"] for b in batches])
    index = np.concatenate([b["example_index"] for b in batches])
    assert weights.sum() == len(feats) and len(weights) % 8 == 0
    assert np.all(index[len(feats):] == -1)
    pad = batches[-1]["input_ids"][-1]
    if len(weights) > len(feats):
        assert pad[:3].tolist() == [tok.cls_id, tok.sep_id, tok.sep_id] and not pad[3:].any()
    train = squad.squad_feature_dataset(v2.examples, tok, shuffle=True, seed=1, repeat=True,
                                        **V2_WINDOWS)
    train = train.shuffle(64, seed=2).batch(16, drop_remainder=True)
    batch = next(iter(train))
    assert batch["input_ids"].shape == (16, 96) and batch["p_mask"].dtype == tf.int32
    assert train.element_spec["token_char_start"].shape == (16, 96)


def _squad_json(tmp_path, qa, context="The cat sat on the mat.", raw=None):
    path = tmp_path / "squad.json"
    text = raw if raw is not None else json.dumps(
        {"version": "1.1", "data": [{"title": "T", "paragraphs": [
            {"context": context, "qas": [
                {"id": "ok1", "question": "Who sat?", "answers": [{"text": "cat",
                                                                   "answer_start": 4}]},
                qa]}]}]})
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("qa,match", [
    ({"id": "q2", "question": "Where?", "answers": [{"text": "mat"}]}, "has no answer_start"),
    ({"id": "q2", "question": "Where?", "answers": [{"text": "mat", "answer_start": 3}]},
     "not at offset 3"),
    ({"id": "q2", "question": "Where?", "answers": []}, "answerable question has no answers"),
    ({"id": "q2", "question": "Where?", "answers": [], "is_impossible": "yes"}, "true/false"),
    ({"id": "q2", "answers": [{"text": "mat", "answer_start": 19}]}, 'missing "question"'),
])
def test_malformed_questions_name_the_id(tmp_path, qa, match):
    path = _squad_json(tmp_path, qa)
    with pytest.raises(DataFormatError, match=match) as info:
        squad_json.read_squad(path)
    assert info.value.example_id == "q2" and info.value.path == path
    data = squad_json.read_squad(path, skip_malformed=True)
    assert [ex.qas_id for ex in data.examples] == ["ok1"] and data.num_skipped == 1


def test_bad_json_names_the_line(tmp_path):
    path = _squad_json(tmp_path, None, raw='{"version": "1.1",\n "data": [\n  {"title": }]}')
    with pytest.raises(DataFormatError, match="bad JSON") as info:
        squad_json.read_squad(path)
    assert info.value.line == 3
    path = _squad_json(tmp_path, None, raw='{"version": "2.0"}')
    with pytest.raises(DataFormatError, match='"data" list'):
        squad_json.read_squad(path)
    with pytest.raises(ValueError, match="max_query_length"):
        squad.squad_feature_dataset([squad_json.SquadExample("a", "q", "c", [])], None, seq_len=16,
                                    max_query_length=13)
