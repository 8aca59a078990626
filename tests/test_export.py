"""SavedModel export: raw text in, predictions out, identical in a fresh process (which imports
only TensorFlow and tensorflow-text) to the in-memory model fed by the training readers."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.config import load_config
from funnel_tf.export import export_saved_model, read_task_info
from funnel_tf.tasks import get_task
from funnel_tf.tasks.defaults import Hparams
from funnel_tf.text.classification import TextExamples, encode_text_examples
from funnel_tf.text.wordpiece import WordpieceTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(REPO, "data", "demo_vocab.txt")

# Runs in a fresh interpreter without funnel_tf on the path: load, call serving_default, dump JSON.
LOADER = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tokenizer ops
    jobs = json.load(open(sys.argv[1]))
    out = {}
    for name, job in jobs.items():
        fn = tf.saved_model.load(job["dir"]).signatures["serving_default"]
        res = fn(**{k: tf.constant(v) for k, v in job["inputs"].items()})
        out[name] = {k: ([x.decode("utf-8") for x in v.numpy()] if v.dtype == tf.string
                         else v.numpy().tolist()) for k, v in res.items()}
    out["_funnel_tf_imported"] = any(m.startswith("funnel_tf") for m in sys.modules)
    json.dump(out, open(sys.argv[2], "w"))
""")


@pytest.fixture(scope="module")
def tokenizer():
    return WordpieceTokenizer(VOCAB)


@pytest.fixture(scope="module")
def config(tokenizer):
    return load_config("tiny").replace(vocab_size=tokenizer.vocab_size, block_sizes=[1, 1, 1],
                                       d_model=32, n_head=2, d_head=16, d_inner=64,
                                       initializer_std=0.2)


def run_loader(tmp_path, jobs):
    job_file, out_file = tmp_path / "jobs.json", tmp_path / "out.json"
    job_file.write_text(json.dumps(jobs))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", LOADER, str(job_file), str(out_file)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(out_file.read_text())
    assert out.pop("_funnel_tf_imported") is False
    return out


PAIRS = (["the river was warm near the old bridge.", "Déjà vu: the boat left at dawn!", "ok"],
         ["the boat came back", "a second text, much longer than the first one, about the "
          "harbor and the lamps that were lit every evening", ""])


def test_classifier_export_matches_the_in_memory_model(tmp_path, tokenizer, config):
    task = get_task("mrpc")
    hp = Hparams(max_seq_length=24)
    model = task.build_model(config)
    examples = TextExamples(PAIRS[0], PAIRS[1], np.zeros(3, np.int32), ["a", "b", "c"],
                            task.label_names)
    feats = next(encode_text_examples(examples, tokenizer, 24, batch_size=3).as_numpy_iterator())
    expected = model({k: feats[k] for k in task.input_keys})["logits"].numpy()
    assert np.abs(expected[0] - expected[1]).max() > 1e-3  # distinct inputs, distinct outputs

    export_dir = str(tmp_path / "mrpc")
    module = task.serving_module(model, tokenizer, hp)
    export_saved_model(module, export_dir)
    assert module.serve.experimental_get_tracing_count() == 1  # traced once, not again to save
    info = read_task_info(export_dir)
    assert info["kind"] == "classification" and info["pair"] and info["max_seq_length"] == 24
    with pytest.raises(FileExistsError, match="already exists"):
        export_saved_model(task.serving_module(model, tokenizer, hp), export_dir)
    assert sorted(os.listdir(tmp_path)) == ["mrpc"]  # no temp dirs left behind

    got = run_loader(tmp_path, {"mrpc": {"dir": export_dir, "inputs": {
        "text_a": PAIRS[0], "text_b": PAIRS[1]}}})["mrpc"]
    np.testing.assert_allclose(np.array(got["logits"]), expected, atol=1e-5)
    assert got["label"] == [task.label_names[i] for i in expected.argmax(-1)]
    np.testing.assert_allclose(np.array(got["probabilities"]).sum(-1), 1.0, rtol=1e-6)


@pytest.mark.slow
def test_squad_and_race_exports_match(tmp_path, tokenizer, config):
    from funnel_tf.text.race import RaceExamples, build_qa, encode_race_examples
    from funnel_tf.text.squad import build_squad_features, postprocess_predictions
    from funnel_tf.text.squad_json import SquadExample

    # SQuAD v2.0: one window per question (the serving signature reads one window).
    squad = get_task("squad_v2.0")
    hp = Hparams(max_seq_length=48, max_query_length=12, max_answer_length=6)
    qa_model = squad.build_model(config)
    contexts = ["the old stone bridge crosses the river near the village of Sainte-Émilie.",
                "Marta climbed the one hundred and twelve stairs of the lighthouse at dawn."]
    questions = ["what crosses the river?", "when did marta climb?"]
    examples = [SquadExample(f"q{i}", q, c, []) for i, (q, c) in enumerate(zip(questions,
                                                                               contexts))]
    feats = build_squad_features(examples, tokenizer, seq_len=48, doc_stride=128,
                                 max_query_length=12)
    assert len(feats) == 2
    out = qa_model({k: tf.constant(feats[k]) for k in squad.input_keys})
    answers, odds = postprocess_predictions(
        examples, feats, out["start_logits"].numpy(), out["end_logits"].numpy(),
        out["cls_logits"].numpy(), n_best=48, max_answer_length=6, null_threshold=None)

    # RACE
    race = get_task("race")
    rhp = Hparams(max_seq_length=40, max_qa_length=16)
    mc_model = race.build_model(config)
    article = "the boat left the harbor at dawn and came back when the moon rose over the bay."
    rq = ["the boat came back _ .", "what did the boat leave?"]
    ropts = [["at noon", "when the moon rose", "never", "in winter"],
             ["the harbor", "the bay", "the moon", "the village"]]
    rex = RaceExamples([article] * 2, [[build_qa(q, o) for o in opts] for q, opts in
                                       zip(rq, ropts)], np.zeros(2, np.int32), ["high"] * 2,
                       ["x", "y"])
    rfeats = next(encode_race_examples(rex, tokenizer, 40, max_qa_length=16, batch_size=2)
                  .as_numpy_iterator())
    rexpected = mc_model({k: rfeats[k] for k in race.input_keys})["logits"].numpy()

    jobs = {}
    for name, task, model, h, inputs in (
            ("squad", squad, qa_model, hp, {"question": questions, "context": contexts}),
            ("race", race, mc_model, rhp, {"article": [article] * 2, "question": rq,
                                           "options": ropts})):
        export_saved_model(task.serving_module(model, tokenizer, h), str(tmp_path / name))
        jobs[name] = {"dir": str(tmp_path / name), "inputs": inputs}
    got = run_loader(tmp_path, jobs)

    s = got["squad"]
    np.testing.assert_allclose(s["null_odds"], [odds["q0"], odds["q1"]], atol=1e-5)
    for i, qid in enumerate(("q0", "q1")):
        # The span is the reference's best span (byte offsets into the UTF-8 context); the
        # answer text is that span, or "" when the answer-class odds say "no answer".
        assert s["answer"][i] == (answers[qid] if s["has_answer"][i] else "")
        start, end = s["answer_start"][i], s["answer_end"][i]
        assert contexts[i].encode()[start:end].decode() == answers[qid]
    np.testing.assert_allclose(np.array(got["race"]["logits"]), rexpected, atol=1e-5)
    assert got["race"]["answer"] == ["ABCD"[i] for i in rexpected.argmax(-1)]
