"""SQuAD v1.1 / v2.0 evaluation against hand-worked examples and the shared dev/train samples."""

import json

import pytest

from funnel_tf.metrics import squad


@pytest.mark.parametrize("text, expected", [
    ("The Eiffel-Tower!", "eiffeltower"),          # punctuation goes first, so hyphenated words join
    ("  An   apple a day  ", "apple day"),         # articles removed, whitespace collapsed
    ("theory of theatre", "theory of theatre"),    # articles only as whole words
    ("an-apple", "anapple"),                       # "an" is glued to "apple" before article removal
    ("A.B.C.", "abc"),                             # "a.b.c." -> "abc": no longer an article
    ("the.", ""),                                  # "the." -> "the" -> removed
    ("U.S.A", "usa"),
    ("$1,000", "1000"),
    ("rock 'n' roll", "rock n roll"),
    ("New\nYork\tCity", "new york city"),
    ("l’amour – café", "l’amour – café"),          # non-ASCII punctuation is kept (string.punctuation only)
    ("THE END", "end"),
])
def test_normalize_answer(text, expected):
    assert squad.normalize_answer(text) == expected


def test_f1_by_hand():
    # gold "the cat sat on the mat" -> [cat, sat, on, mat]; pred "a cat on a mat mat" -> [cat, on, mat, mat]
    # common (multiset) = cat, on, mat = 3 -> P = 3/4, R = 3/4, F1 = 0.75
    assert squad.f1_score("the cat sat on the mat", "a cat on a mat mat") == pytest.approx(0.75)
    assert squad.f1_score("Paris", "London") == 0.0
    # empty vs empty: 1 under v2.0 rules, 0 under v1.1
    assert squad.f1_score("", "the") == 1.0
    assert squad.f1_score("", "", v2=False) == 0.0
    assert squad.f1_score("", "x") == 0.0
    assert squad.exact_match_score("The Broncos.", "broncos") == 1


def _dataset(qas):
    """One-article SQuAD JSON from [(qid, [gold texts])]."""
    return {"version": "x", "data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [
        {"id": qid, "question": "q?", "answers": [{"text": t, "answer_start": 0} for t in golds]}
        for qid, golds in qas]}]}]}


V1 = _dataset([("q1", ["Denver Broncos", "The Denver Broncos"]),
               ("q2", ["Santa Clara, California", "Levi's Stadium"]),
               ("q3", ["1,000"])])
V1_PREDS = {"q1": "denver broncos!", "q2": "Levi's Stadium in Santa Clara", "q3": "about 1000"}
# q1: EM 1, F1 1.
# q2: EM 0. pred tokens [levis, stadium, in, santa, clara]
#     vs [santa, clara, california]: common 2, P 2/5 R 2/3 -> F1 0.5
#     vs [levis, stadium]:          common 2, P 2/5 R 1   -> F1 2·0.4/1.4 = 4/7   -> max 4/7
# q3: EM 0. [about, 1000] vs [1000]: P 1/2 R 1 -> F1 2/3
# EM = 100·1/3; F1 = 100·(1 + 4/7 + 2/3)/3 = 100·47/63


def test_evaluate_v1_by_hand():
    out = squad.evaluate_v1(V1, V1_PREDS)
    assert out == pytest.approx({"exact_match": 100 / 3, "f1": 100 * 47 / 63, "total": 3})


def test_evaluate_v1_missing_predictions():
    preds = {k: v for k, v in V1_PREDS.items() if k != "q3"}
    with pytest.raises(ValueError, match=r"1 of 3 questions have no prediction \(first: \['q3'\]\)"):
        squad.evaluate_v1(V1, preds)
    # allow_missing: q3 scores 0 and still counts -> F1 = 100·(1 + 4/7)/3 = 100·11/21
    out = squad.evaluate_v1(V1, preds, allow_missing=True)
    assert out == pytest.approx({"exact_match": 100 / 3, "f1": 100 * 11 / 21, "total": 3, "missing": 1})


def test_evaluate_v1_rejects_unanswerable_questions():
    with pytest.raises(ValueError, match="'n1' has no gold answers.*evaluate_v2"):
        squad.evaluate_v1(_dataset([("n1", [])]), {"n1": ""})


# v2.0 worked example. (qid, golds, prediction, null odds) -> raw EM / F1:
#   h1 ["Paris"]        "Paris"     -2.0  -> 1 / 1
#   n2 []               ""          -1.0  -> 1 / 1    (no answer, predicted empty)
#   h2 ["the red fox"]  "red dog"    0.5  -> 0 / 0.5  ([red, fox] vs [red, dog])
#   n1 []               "London"     1.5  -> 0 / 0
#   h3 ["1990"]         "in 1990s"   3.0  -> 0 / 0
V2 = _dataset([("h1", ["Paris"]), ("h2", ["the red fox"]), ("h3", ["1990"]), ("n1", []), ("n2", [])])
V2_PREDS = {"h1": "Paris", "h2": "red dog", "h3": "in 1990s", "n1": "London", "n2": ""}
V2_ODDS = {"h1": -2.0, "h2": 0.5, "h3": 3.0, "n1": 1.5, "n2": -1.0}


def test_evaluate_v2_without_null_odds():
    # exact 1+0+0+0+1 = 2/5; f1 1+.5+0+0+1 = 2.5/5; HasAns h1,h2,h3: 1/3 and 1.5/3; NoAns n1,n2: 1/2 and 1/2
    out = squad.evaluate_v2(V2, V2_PREDS)
    assert out == pytest.approx({
        "exact": 40.0, "f1": 50.0, "total": 5,
        "HasAns_exact": 100 / 3, "HasAns_f1": 50.0, "HasAns_total": 3,
        "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2})


def test_evaluate_v2_with_null_odds_and_best_threshold():
    # Default threshold 1.0: odds > 1 -> h3 (3.0) and n1 (1.5) become "no answer": h3 -> 0, n1 -> 1.
    #   exact: h1 1, h2 0, h3 0, n1 1, n2 1 = 3/5 -> 60;  f1: 1 + .5 + 0 + 1 + 1 = 3.5/5 -> 70
    #   HasAns: 1/3, 1.5/3 -> 33.3, 50;  NoAns: 2/2 -> 100, 100
    # Sweep by increasing odds h1(-2) n2(-1) h2(.5) n1(1.5) h3(3), starting from "all null" = #NoAns = 2:
    #   exact: +1 -> 3 (best, thresh -2) | n2 pred "" -> +0 -> 3 | h2 +0 -> 3 | n1 -1 -> 2 | h3 +0 -> 2
    #          best_exact = 3/5 = 60 at -2.0
    #   f1:    +1 -> 3 (thresh -2) | +0 -> 3 | +.5 -> 3.5 (best, thresh .5) | -1 -> 2.5 | +0 -> 2.5
    #          best_f1 = 3.5/5 = 70 at 0.5
    out = squad.evaluate_v2(V2, V2_PREDS, V2_ODDS)
    assert out == pytest.approx({
        "exact": 60.0, "f1": 70.0, "total": 5,
        "HasAns_exact": 100 / 3, "HasAns_f1": 50.0, "HasAns_total": 3,
        "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 2,
        "best_exact": 60.0, "best_exact_thresh": -2.0, "best_f1": 70.0, "best_f1_thresh": 0.5})
    # The reported thresholds reproduce the best scores when applied.
    assert squad.evaluate_v2(V2, V2_PREDS, V2_ODDS, null_threshold=0.5)["f1"] == pytest.approx(70.0)
    assert squad.evaluate_v2(V2, V2_PREDS, V2_ODDS, null_threshold=-2.0)["exact"] == pytest.approx(60.0)


def test_best_threshold_keeps_script_start_of_zero():
    # h: wrong answer (odds -5), n: no-answer question answered "x" (odds -3).
    # start = 1 (#NoAns) -> h +0 = 1 (not better) -> n -1 = 0. Best is "all null": 50 %, reported thresh 0.0
    # (the script's initial value, although with negative odds 0.0 would not itself null both).
    data = _dataset([("h", ["yes"]), ("n", [])])
    out = squad.evaluate_v2(data, {"h": "no", "n": "x"}, {"h": -5.0, "n": -3.0})
    assert (out["best_exact"], out["best_exact_thresh"]) == (50.0, 0.0)


def test_v2_gold_that_normalises_to_empty_counts_as_no_gold():
    # golds ["The"] -> normalise to "" -> dropped -> gold "" ; still a HasAns question (answers list non-empty)
    out = squad.evaluate_v2(_dataset([("q", ["The"])]), {"q": ""})
    assert (out["exact"], out["f1"], out["HasAns_total"]) == (100.0, 100.0, 1)
    assert "NoAns_total" not in out


def test_v2_errors():
    with pytest.raises(ValueError, match="no value for 1 predicted questions"):
        squad.evaluate_v2(V2, V2_PREDS, {k: v for k, v in V2_ODDS.items() if k != "h2"})
    with pytest.raises(ValueError, match="have no prediction"):
        squad.evaluate_v2(V2, {"h1": "Paris"})
    with pytest.raises(ValueError, match="not a string"):
        squad.evaluate_v2(V2, {**V2_PREDS, "h1": 3})
    with pytest.raises(ValueError, match="not a number"):
        squad.evaluate_v2(V2, V2_PREDS, {**V2_ODDS, "h1": "high"})
    with pytest.raises(ValueError, match="malformed article 0"):
        squad.evaluate_v2({"data": [{"title": "T", "paragraphs": [{"qas": [{"id": "a"}]}]}]}, {"a": ""})
    with pytest.raises(ValueError, match="appears twice"):
        squad.evaluate_v2(_dataset([("a", []), ("a", [])]), {"a": ""})


def test_v2_allow_missing_scores_zero():
    preds = {k: v for k, v in V2_PREDS.items() if k != "n2"}
    out = squad.evaluate_v2(V2, preds, allow_missing=True)
    # n2 (was 1/1) now 0: exact 1/5, f1 1.5/5
    assert (out["exact"], out["f1"], out["total"], out["missing"]) == pytest.approx((20.0, 30.0, 5, 1))


def test_paths_and_bad_json(tmp_path):
    (tmp_path / "data.json").write_text(json.dumps(V2))
    (tmp_path / "pred.json").write_text(json.dumps(V2_PREDS))
    (tmp_path / "null_odds.json").write_text(json.dumps(V2_ODDS))
    out = squad.evaluate_v2(str(tmp_path / "data.json"), tmp_path / "pred.json", str(tmp_path / "null_odds.json"))
    assert out["best_f1"] == pytest.approx(70.0)
    (tmp_path / "bad.json").write_text('{"q1": "a",\n "q2": }')
    with pytest.raises(ValueError, match=r"bad.json:2:8: invalid SQuAD predictions"):
        squad.evaluate_v1(V1, str(tmp_path / "bad.json"))
    with pytest.raises(FileNotFoundError, match="nope.json"):
        squad.evaluate_v1(str(tmp_path / "nope.json"), V1_PREDS)


def _all_questions(path):
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [qa for a in data for p in a["paragraphs"] for qa in p["qas"]]


def test_real_v2_dev_sample(shared_data):
    path = shared_data / "squad" / "v2.0" / "dev-v2.0.first5articles.json"
    qas = _all_questions(path)
    oracle = {qa["id"]: (qa["answers"][0]["text"] if qa["answers"] else "") for qa in qas}
    out = squad.evaluate_v2(str(path), oracle)
    assert (out["exact"], out["f1"], out["HasAns_total"], out["NoAns_total"]) == (100.0, 100.0, 705, 702)
    # Always abstaining gets exactly the NoAns share: 702 / 1407.
    out = squad.evaluate_v2(str(path), {qid: "" for qid in oracle})
    assert out["exact"] == pytest.approx(100 * 702 / 1407)
    assert (out["HasAns_f1"], out["NoAns_f1"]) == (0.0, 100.0)
    # Oracle text + odds that rank no-answer questions above answerable ones: the sweep finds 100 %.
    text = {qa["id"]: (qa["answers"] or qa["plausible_answers"])[0]["text"] for qa in qas}
    odds = {qa["id"]: (5.0 if not qa["answers"] else -5.0) for qa in qas}
    out = squad.evaluate_v2(str(path), text, odds)
    assert (out["best_exact"], out["best_f1"], out["best_f1_thresh"]) == (100.0, 100.0, -5.0)


def test_real_v1_train_head(shared_data):
    path = shared_data / "squad" / "v1.1" / "train-v1.1.head.json"
    qas = _all_questions(path)
    out = squad.evaluate_v1(str(path), {qa["id"]: qa["answers"][0]["text"] for qa in qas})
    assert out == {"exact_match": 100.0, "f1": 100.0, "total": 3807}
