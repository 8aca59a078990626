"""FunnelTextClassifier: HF PyTorch parity from raw text, fit, save_pretrained, export + serving.load
in a fresh process, and its user errors."""

import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf import FunnelConfig, FunnelForSequenceClassification, FunnelTextClassifier, FunnelTokenizer
from funnel_tf.classifier_inputs import ClassifierError
from funnel_tf.resources import demo_vocab_path

REPO = pathlib.Path(__file__).resolve().parents[1]
TEXTS = ["The cat sat on the mat.", "Héllo wörld, ünïcödé and 中文 text!",
         "A longer sentence that goes on and on so the classifier has to truncate it " * 3]
PAIRS = (["Is it raining?", "Who wrote it?"], ["It rained all day.", "Nobody knows."])


def _vocab_size():
    with open(demo_vocab_path(), encoding="utf-8") as f:
        return sum(1 for _ in f)


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A random HF PyTorch FunnelForSequenceClassification (3 labels) saved with the demo vocab."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    cfg = transformers.FunnelConfig(vocab_size=_vocab_size(), d_model=32, n_head=4, d_head=8, d_inner=40,
                                    block_sizes=[1, 1], num_decoder_layers=1,
                                    id2label={0: "neg", 1: "neutral", 2: "pos"})
    model = transformers.FunnelForSequenceClassification(cfg).eval()
    with torch.no_grad():  # move biases / LayerNorms off their constant init so a mis-mapping shows
        for name, p in model.named_parameters():
            if p.ndim == 1 or "r_" in name or "seg_embed" in name:
                p.add_(torch.randn_like(p) * 0.1)
    folder = tmp_path_factory.mktemp("hf_cls")
    model.save_pretrained(folder)
    (folder / "vocab.txt").write_bytes(open(demo_vocab_path(), "rb").read())
    return folder, model


def _hf_logits(hf_model, folder, a, b=None, length=32):
    import torch
    import transformers

    tok = transformers.FunnelTokenizer(vocab=str(folder / "vocab.txt"), unk_token="[UNK]", sep_token="[SEP]",
                                       pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    enc = tok(a, b, max_length=length, padding="max_length", truncation=True, return_token_type_ids=True,
              return_tensors="pt")
    with torch.no_grad():
        return hf_model(**enc).logits.numpy()


@pytest.mark.reference
def test_logits_from_raw_text_match_hf_pytorch(hf_folder):
    folder, hf_model = hf_folder
    clf = FunnelTextClassifier.from_pretrained(str(folder), sequence_length=32)
    assert clf.num_classes == 3 and clf.label_names == ["neg", "neutral", "pos"]  # the checkpoint's own head
    logits = clf.predict(TEXTS)
    assert logits.shape == (3, 3) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, _hf_logits(hf_model, folder, TEXTS), atol=1e-5, rtol=0)
    np.testing.assert_allclose(clf.predict(np.array(TEXTS)), logits, atol=1e-6)  # a numpy array of strings
    pair_logits = clf.predict(PAIRS)  # (texts, pair_texts)
    np.testing.assert_allclose(pair_logits, _hf_logits(hf_model, folder, *PAIRS), atol=1e-5, rtol=0)
    # Pre-tokenized input gives the same as raw text.
    np.testing.assert_allclose(clf(clf.tokenizer(TEXTS, sequence_length=32)).numpy(), logits, atol=1e-6)


def test_user_errors(tmp_path):
    tiny = FunnelConfig(vocab_size=50, block_sizes=[1, 1], num_decoder_layers=1, d_model=16, n_head=2, d_head=8,
                        d_inner=24)
    tokenizer = FunnelTokenizer(demo_vocab_path(), sequence_length=16)
    with pytest.raises(ClassifierError, match=r"has 919 tokens but the model has vocab_size 50"):
        FunnelTextClassifier(FunnelForSequenceClassification(tiny), tokenizer)
    clf = FunnelTextClassifier(FunnelForSequenceClassification(tiny.replace(vocab_size=919), num_labels=2), tokenizer)
    with pytest.raises(ClassifierError, match=r"predict\(\[text\]\)"):
        clf.predict("one string")
    with pytest.raises(ClassifierError, match="2 label_names for 3 classes"):
        FunnelTextClassifier(FunnelForSequenceClassification(tiny.replace(vocab_size=919), num_labels=3), tokenizer,
                             label_names=["a", "b"])
    with pytest.raises(ClassifierError, match="num_classes must be a positive int"):
        FunnelTextClassifier.from_pretrained(str(tmp_path), num_classes=0)
    assert clf.predict([]).shape == (0, 2)


def test_keras_file_round_trip(tmp_path):
    """clf.save("x.keras") -> keras.saving.load_model: same class, labels, tokenizer settings and logits."""
    import keras

    tiny = FunnelConfig(vocab_size=_vocab_size(), block_sizes=[1, 1], num_decoder_layers=1, d_model=16, n_head=2,
                        d_head=8, d_inner=24)
    clf = FunnelTextClassifier(FunnelForSequenceClassification(tiny, num_labels=2),
                               FunnelTokenizer(demo_vocab_path(), sequence_length=16, truncation="longest_first"),
                               label_names=["neg", "pos"])
    texts = tf.constant(["a good film", "Héllo wörld"])
    want = clf(texts).numpy()
    clf.save(str(tmp_path / "clf.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "clf.keras"))
    assert type(loaded) is FunnelTextClassifier and loaded.label_names == ["neg", "pos"]
    assert (loaded.tokenizer.sequence_length, loaded.tokenizer.truncation) == (16, "longest_first")
    np.testing.assert_allclose(loaded(texts).numpy(), want, atol=1e-6)
    loaded.save_pretrained(str(tmp_path / "again"))  # the vocab outlives Keras' extraction folder
    assert (tmp_path / "again" / "vocab.txt").exists()


_FRESH_LOAD = textwrap.dedent("""
    import sys, json
    import tensorflow as tf
    export_dir, mode = sys.argv[1], sys.argv[2]
    if mode == "plain":
        try:
            tf.saved_model.load(export_dir)
        except Exception as e:
            print(json.dumps({"error": str(e)}))
        sys.exit(0)
    from funnel_tf import serving
    loaded = serving.load(export_dir)
    out = loaded.signatures["serving_default"](text=tf.constant(json.loads(sys.argv[3])))
    print(json.dumps({"logits": out["logits"].numpy().tolist(), "label": [l.decode() for l in out["label"].numpy()]}))
""")


@pytest.mark.slow
def test_fit_save_reload_export_and_fresh_process_load(tmp_path):
    """Keras compile/fit on (text, label) batches learns a toy task; save_pretrained/from_pretrained and the
    exported SavedModel (loaded in a fresh process through funnel_tf.serving) give the same logits."""
    tiny = FunnelConfig(vocab_size=_vocab_size(), block_sizes=[1, 1], num_decoder_layers=1, d_model=32, n_head=4,
                        d_head=8, d_inner=40, hidden_dropout=0.0, attention_dropout=0.0)
    clf = FunnelTextClassifier(FunnelForSequenceClassification(tiny, num_labels=2),
                               FunnelTokenizer(demo_vocab_path(), sequence_length=16, truncation="longest_first"),
                               label_names=["neg", "pos"])
    texts = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad"] * 4
    labels = [1, 1, 1, 1, 0, 0, 0, 0] * 4
    clf.compile(optimizer=tf.keras.optimizers.Adam(3e-3))
    history = clf.fit(tf.data.Dataset.from_tensor_slices((texts, labels)).batch(8), epochs=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    logits = clf.predict(texts[:8])
    assert (logits.argmax(-1) == np.asarray(labels[:8])).mean() >= 0.75

    # A plain list of texts with labels works too (shuffled, batched for you).
    clf.fit(texts, labels, batch_size=8, epochs=1, verbose=0)
    with pytest.raises(ClassifierError, match="one label per text"):
        clf.fit(texts, labels[:3])
    logits = clf.predict(texts[:8])

    clf.save_pretrained(str(tmp_path / "clf"))
    again = FunnelTextClassifier.from_pretrained(str(tmp_path / "clf"))
    assert again.label_names == ["neg", "pos"] and again.tokenizer.sequence_length == 16
    np.testing.assert_allclose(again.predict(texts[:8]), logits, atol=1e-6)

    export_dir = tmp_path / "export"
    clf.export(str(export_dir))
    readme = (export_dir / "README.txt").read_text()
    assert "import tensorflow_text" in readme and "serving.load" in readme and "text [N] string" in readme
    script = tmp_path / "load.py"
    script.write_text(_FRESH_LOAD)
    import json

    def fresh(mode):
        run = subprocess.run([sys.executable, str(script), str(export_dir), mode, json.dumps(texts[:8])],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads(run.stdout.strip().splitlines()[-1])

    # Without tensorflow_text TF cannot load the graph; the README says why, serving.load just works.
    assert "TFText" in fresh("plain").get("error", "")
    served = fresh("serving")
    np.testing.assert_allclose(np.asarray(served["logits"]), logits, atol=1e-5)
    assert served["label"] == [["neg", "pos"][i] for i in logits.argmax(-1)]
