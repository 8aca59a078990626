"""FunnelTextClassifier in keras-hub's shape: tokenization is FunnelTextClassifierPreprocessor, mapped
over the tf.data pipeline, so the compiled train / predict steps see int features only and are
XLA-compiled (jit_compile=True) where this host can; the preprocessor builds the features the
tokenizer builds (the old in-model path) for texts and pairs, keeping labels and sample weights."""

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf import FunnelConfig, FunnelForSequenceClassification, FunnelTextClassifier, FunnelTokenizer, xla
from funnel_tf.classifier_preprocessor import FunnelTextClassifierPreprocessor
from funnel_tf.resources import demo_vocab_path

TEXTS = ["The cat sat on the mat.", "Héllo wörld, ünïcödé and 中文 text!", "a good film " * 6]
PAIRS = (["Is it raining?", "Who wrote it?", "long " * 9], ["It rained all day.", "Nobody knows.", "short"])


@pytest.fixture(scope="module")
def tokenizer():
    return FunnelTokenizer(demo_vocab_path(), sequence_length=12, truncation="longest_first")


def _classifier(tokenizer, pair=False):
    config = FunnelConfig(vocab_size=tokenizer.vocab_size, block_sizes=[1, 1], num_decoder_layers=1, d_model=16,
                          n_head=2, d_head=8, d_inner=24, hidden_dropout=0.0, attention_dropout=0.0)
    return FunnelTextClassifier(FunnelForSequenceClassification(config, num_labels=2), tokenizer, pair=pair)


def _same(got, want):
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == tf.int32 and got[k].shape == want[k].shape
        np.testing.assert_array_equal(got[k].numpy(), want[k].numpy())


def test_preprocessor_gives_the_tokenizer_features_for_texts_pairs_and_datasets(tokenizer):
    pre = FunnelTextClassifierPreprocessor(tokenizer)
    features, pair_features = tokenizer(TEXTS), tokenizer(*PAIRS)  # what the tokenizer builds
    _same(pre(TEXTS), features)
    _same(pre(tf.constant(TEXTS)), features)
    _same(pre(PAIRS), pair_features)
    assert pre(features) is features  # pre-tokenized input passes through

    # (fit's (x, y) elements: test_classifier_nonfinite.py's fits and the evaluate below.)
    labels = np.array([1, 0, 1], np.int32)
    weights = np.array([1.0, 0.5, 2.0], np.float32)
    pairs = pre.map(tf.data.Dataset.from_tensor_slices(((PAIRS[0], PAIRS[1]), labels, weights)).batch(3))
    assert pairs.element_spec[0]["input_ids"] == tf.TensorSpec([None, 12], tf.int32)  # what the step sees
    x, y, w = next(iter(pairs))
    _same(x, pair_features)
    np.testing.assert_array_equal(y.numpy(), labels)
    np.testing.assert_array_equal(w.numpy(), weights)
    single = tf.data.Dataset.from_tensor_slices((TEXTS,)).batch(3)  # predict's (x,) elements
    x = next(iter(pre.map(single)))
    _same(x, features)


def _graphs(fn, depth=3):
    """GraphDefs of every trace of a Keras step function (a tf.function, or a closure holding one)."""
    if hasattr(fn, "_list_all_concrete_functions"):
        return [cf.graph.as_graph_def() for cf in fn._list_all_concrete_functions()]
    found = []
    for cell in (getattr(fn, "__closure__", None) or ()) if depth else ():
        try:
            found += _graphs(cell.cell_contents, depth - 1)
        except ValueError:  # an empty cell
            pass
    return found


def compiled_step_report(fn):
    """(names of XLA-compiled functions, string-typed ops) over every trace of a step function."""
    gds = _graphs(fn)
    assert gds, "no traced step found"
    xla_fns, string_ops = [], []
    string = tf.string.as_datatype_enum
    for gd in gds:
        xla_fns += [f.signature.name for f in gd.library.function
                    if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b]
        for node in list(gd.node) + [n for f in gd.library.function for n in f.node_def]:
            types = [node.attr[k].type for k in ("T", "dtype", "out_type", "Tin") if k in node.attr]
            if string in types or "Wordpiece" in node.op or "Regex" in node.op or "Lookup" in node.op:
                string_ops.append(node.op)
    return xla_fns, string_ops


@pytest.mark.needs_host_xla
def test_evaluate_and_predict_steps_are_jit_compiled_and_hold_no_tokenizer_ops(tokenizer):
    """(fit's train step: test_classifier_nonfinite.py checks it on the fit it runs anyway.)"""
    if not xla.can_jit():
        pytest.skip("no XLA:CPU on this TensorFlow build")
    clf = _classifier(tokenizer)
    assert clf.jit_compile is True  # predict without compile() too
    clf.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    assert clf.jit_compile is True
    logits = clf.predict(TEXTS)
    np.testing.assert_allclose(logits, clf(tokenizer(TEXTS)).numpy(), atol=1e-5)  # XLA vs TF kernels
    clf.evaluate(TEXTS, [1, 0, 1], batch_size=3)
    for fn in (clf.test_function, clf.predict_function):
        xla_fns, string_ops = compiled_step_report(fn)
        assert xla_fns, "the step is not XLA-compiled"
        assert not string_ops, f"tokenizer / string ops inside the compiled step: {sorted(set(string_ops))}"


def test_no_jit_where_the_host_cannot_compile(tokenizer, monkeypatch):
    """The TPU build has no XLA:CPU (forced here with FUNNEL_TF_HOST_XLA=0): predict and compile stay
    on TF's kernels, as funnel_tf.xla decides for the rest of the code."""
    monkeypatch.setenv(xla.ENV, "0")
    xla.reset_for_tests()
    try:
        if xla.has_gpu():
            pytest.skip("a GPU compiles whatever the host says")
        clf = _classifier(tokenizer)
        assert clf.jit_compile is False
        clf.compile()
        assert clf.jit_compile is False
    finally:
        monkeypatch.delenv(xla.ENV)
        xla.reset_for_tests()


def test_export_serving_graph_builds_the_features_predict_builds(monkeypatch):
    """The exported graph tokenizes with the classifier's own preprocessor: a tokenizer with HF's pair
    truncation (which differs from BERT's here) gives the same features and logits in both, and
    clf((a, b)) the same as clf on the tokenizer's features (the old in-model path)."""
    import funnel_tf.export as export_module

    tokenizer = FunnelTokenizer(demo_vocab_path(), sequence_length=10)  # truncation="hf_longest_first"
    a, b = ["the cat sat", "a good film"], ["the cat sat", "about it"]
    features = tokenizer(a, b)
    assert (features["input_ids"].numpy() !=
            FunnelTokenizer(demo_vocab_path(), sequence_length=10, truncation="longest_first")(a, b)[
                "input_ids"].numpy()).any()
    clf = _classifier(tokenizer, pair=True)
    modules = []
    monkeypatch.setattr(export_module, "export_saved_model",
                        lambda module, export_dir, overwrite=False: modules.append(module) or export_dir)
    clf.export("not-written")  # the serving module only; writing it is test_export.py's job
    served = modules[0].serve(tf.constant(a), tf.constant(b))
    _same(modules[0].features(tf.constant(a), tf.constant(b)), features)
    logits = clf(features).numpy()
    np.testing.assert_allclose(served["logits"].numpy(), logits, atol=1e-5)
    # clf((a, b)) tokenizes outside call() too: the old in-model path's logits.
    np.testing.assert_allclose(clf((a, b)).numpy(), logits, atol=1e-6)
