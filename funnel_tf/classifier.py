"""FunnelTextClassifier: a Keras task that takes raw strings and gives logits.

The keras-hub split: FunnelTextClassifierPreprocessor (the FunnelTokenizer, mapped over the tf.data
pipeline of fit / evaluate / predict) + FunnelForSequenceClassification (backbone FunnelBaseModel +
HF's classification head). The compiled step sees only int features [N, seq_len], so it is
jit-compiled (XLA) where this host can (funnel_tf.xla). Usual Keras workflow:

    clf = FunnelTextClassifier.from_pretrained("path/to/hf-funnel-small", num_classes=2)
    clf.fit(tf.data.Dataset.from_tensor_slices((texts, labels)).batch(16), epochs=1)
    clf.predict(["a great film", "dull"])          # logits [2, 2]
    clf.save_pretrained("my_clf")                  # FunnelTextClassifier.from_pretrained("my_clf")
    clf.save("clf.keras")                          # keras.saving.load_model("clf.keras") (vocab as an asset)
    clf.export("my_clf_savedmodel")                # text-in SavedModel, as finetune.py --export_dir

Pairs: pass `(texts, pair_texts)` wherever texts go. Pre-tokenized input dicts are accepted too.
from_pretrained truncates pairs with BERT's rule, as finetune.py does; the export tokenizes with the
classifier's own preprocessor, so `predict` and the export always agree.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from funnel_tf import xla
from funnel_tf.classifier_inputs import (ClassifierError, as_texts, check_dataset, check_features,
                                         check_labels, is_features)
from funnel_tf.classifier_preprocessor import FunnelTextClassifierPreprocessor
from funnel_tf.modeling.heads import FunnelForSequenceClassification
from funnel_tf.tokenizer import DEFAULT_SEQUENCE_LENGTH, FunnelTokenizer

CLASSIFIER_CONFIG_NAME = "text_classifier.json"
TASK_CONFIG_NAME = "task.json"  # what finetune.py writes beside its best/ model (tasks/runner.py)
# The pair rule finetune.py's readers and funnel_tf.export's serving graph use.
_TRUNCATION = "longest_first"




@keras.saving.register_keras_serializable(package="funnel_tf")
class FunnelTextClassifier(keras.Model):
    """Raw strings [N] (or pairs) -> logits [N, num_classes] (float32; [N, 1] scores for regression).

    Usually made with `FunnelTextClassifier.from_pretrained(checkpoint, num_classes=...)`. After
    `compile()` (AdamW 2e-5, cross-entropy, accuracy), `fit`, `evaluate` and `predict` take texts
    (or `(texts, pair_texts)`) and labels directly, e.g. `clf.fit(texts, labels, epochs=1)`.

    Args:
        model: the FunnelForSequenceClassification that scores the features.
        tokenizer: the FunnelTokenizer of the model's vocab (its sequence_length is the input length);
            `clf.preprocessor` (FunnelTextClassifierPreprocessor) applies it in the input pipeline.
        label_names: one name per class (kept in saves and exports), or None.
        pair: the task reads text pairs (`(texts, pair_texts)` inputs).

    Returns (when called):
        Logits, float32 [N, num_classes].

    Example:

    >>> import os, tempfile
    >>> import tensorflow as tf
    >>> from funnel_tf import (FunnelForSequenceClassification, FunnelTextClassifier,
    ...                        FunnelTokenizer, load_config)
    >>> vocab = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    >>> with open(vocab, "w") as f:
    ...     _ = f.write("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good",
    ...                            "bad", "film"]) + "\\n")
    >>> tokenizer = FunnelTokenizer(vocab, sequence_length=8)
    >>> config = load_config("tiny").replace(vocab_size=tokenizer.vocab_size, block_sizes=[1, 1],
    ...                                      block_repeats=[1, 1], num_decoder_layers=0, d_inner=64)
    >>> model = FunnelForSequenceClassification(config, num_labels=2)
    >>> clf = FunnelTextClassifier(model, tokenizer, label_names=["negative", "positive"])
    >>> clf(tf.constant(["a good film", "a bad film"])).shape  # logits [2, num_classes]
    TensorShape([2, 2])
    >>> folder = clf.save_pretrained(tempfile.mkdtemp())  # weights, vocab, label names
    >>> FunnelTextClassifier.from_pretrained(folder).label_names
    ['negative', 'positive']
    """

    def __init__(self, model: FunnelForSequenceClassification, tokenizer: Optional[FunnelTokenizer],
                 label_names: Optional[Sequence[str]] = None, pair: bool = False, **kwargs):
        kwargs.setdefault("name", "funnel_text_classifier")
        super().__init__(**kwargs)
        if not isinstance(model, FunnelForSequenceClassification):
            raise ClassifierError(f"model must be a FunnelForSequenceClassification, got {type(model).__name__}")
        self.model = model
        self.pair = bool(pair)
        self.tokenizer = self.preprocessor = None
        if tokenizer is not None:  # None only inside keras.saving.load_model, until load_assets
            self._set_tokenizer(tokenizer)
        self.num_classes = int(model.num_labels)
        if label_names is not None and len(label_names) != self.num_classes:
            raise ClassifierError(f"{len(label_names)} label_names for {self.num_classes} classes")
        self.label_names = None if label_names is None else [str(n) for n in label_names]
        self.built = True  # every weight exists (Keras need not trace call() to build)
        # predict's step takes int features only: XLA where this host can (not tensorflow-tpu's CPU).
        self.jit_compile = xla.can_jit()

    def _set_tokenizer(self, tokenizer: FunnelTokenizer) -> None:
        config = self.model.config
        if tokenizer.vocab_size != config.vocab_size:
            raise ClassifierError(f"the vocab ({tokenizer.vocab_path}) has {tokenizer.vocab_size} tokens but the "
                                  f"model has vocab_size {config.vocab_size}; use the checkpoint's own vocab")
        if tokenizer.sequence_length < config.min_seq_len():
            raise ClassifierError(f"sequence_length={tokenizer.sequence_length} is shorter than this model "
                                  f"can pool ({config.min_seq_len()} at least)")
        self.tokenizer = tokenizer
        self.preprocessor = FunnelTextClassifierPreprocessor(tokenizer, pair=self.pair)

    # ---------------------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(cls, path: str, num_classes: Optional[int] = None,
                        sequence_length: Optional[int] = None, label_names: Optional[Sequence[str]] = None,
                        pair: Optional[bool] = None, vocab: Optional[str] = None, **kwargs):
        """A classifier from any checkpoint (ours, HF folder, original release) and its vocab.

        num_classes: the head's outputs (default: the checkpoint's head, else its config, else 2;
        1 = regression); a checkpoint without this head gets a new one (with a warning).
        vocab: the vocab file when the folder has none. kwargs: `dtype` (the precision policy, e.g.
        "mixed_bfloat16"; see FunnelModel.from_pretrained) and config overrides (e.g. hidden_dropout).
        A finetune.py run (its model_dir or best/) keeps its task's label names, pair flag and
        max_seq_length (task.json); a FunnelTextClassifier.save_pretrained folder its own.
        """
        from funnel_tf.checkpoints.resolver import BEST_DIR, has_best

        if tf.io.gfile.isdir(path) and has_best(path):
            path = os.path.join(path, BEST_DIR)  # a finetuning model_dir stands for its best/ model
        saved = _read_classifier_config(path)
        if num_classes is None and label_names is not None:
            num_classes = len(label_names)
        if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
            raise ClassifierError(f"num_classes must be a positive int, got {num_classes!r}")
        tokenizer = FunnelTokenizer.from_pretrained(
            vocab or path, sequence_length=sequence_length or saved.get("sequence_length", DEFAULT_SEQUENCE_LENGTH),
            truncation=_TRUNCATION)
        model = FunnelForSequenceClassification.from_pretrained(path, num_labels=num_classes, **kwargs)
        if label_names is None:
            names = saved.get("label_names") or _hf_label_names(path)
            if names and len(names) == model.num_labels:
                label_names = names
        return cls(model, tokenizer, label_names=label_names,
                   pair=saved.get("pair", False) if pair is None else pair)

    # ------------------------------------------------------------------------------- forward
    def preprocess(self, x):
        """texts [N], (texts, pair_texts) or a features dict -> the model's input dict."""
        return x if is_features(x) else self.preprocessor(x)

    def __call__(self, inputs, *args, **kwargs):
        """`clf(texts)` for convenience: raw text is tokenized here, before Keras' call, so that
        call() (and every compiled step) only ever sees the int features dict."""
        return super().__call__(self.preprocess(inputs), *args, **kwargs)

    def call(self, inputs, training=False):
        """features {input_ids, attention_mask, token_type_ids} int [N, L] -> logits [N, C]."""
        return self.model(inputs, training=training)["logits"]  # [N, C]

    def compile(self, optimizer="auto", loss="auto", metrics="auto", nonfinite: str = "stop",
                max_nonfinite: int = 100, **kwargs):
        """Keras' compile with this task's defaults: AdamW(2e-5), cross-entropy on logits (MSE for
        one output), accuracy. jit_compile defaults to True where XLA can compile on this host
        (tokenization runs in the input pipeline, not in the step).

        nonfinite: what fit does with a step whose loss or a gradient is NaN/inf (the scripts'
        --nonfinite): its update is never applied; "stop" then raises
        funnel_tf.engine.actions.NonFiniteLossError (a UserError) naming the step, with the weights
        at their last finite values; "skip" goes on, counting such steps in
        history["nonfinite_steps"], and raises once more than `max_nonfinite` were skipped."""
        from funnel_tf.nonfinite_guard import NonFiniteGuard, check_policy

        check_policy(nonfinite, max_nonfinite)
        if getattr(self, "_nonfinite_guard", None) is None and keras.backend.backend() == "jax":
            from funnel_tf.classifier_jax import JaxNonFiniteGuard

            self._nonfinite_guard = JaxNonFiniteGuard(self, nonfinite, max_nonfinite)
            self._nonfinite_counters = self._nonfinite_guard.counters  # tracked: in the JAX state
        elif getattr(self, "_nonfinite_guard", None) is None:
            self._nonfinite_guard = NonFiniteGuard(nonfinite, max_nonfinite)
        else:
            self._nonfinite_guard.set_policy(nonfinite, max_nonfinite)
        if optimizer == "auto":
            optimizer = keras.optimizers.AdamW(2e-5, weight_decay=0.01)
        regression = self.num_classes == 1
        if loss == "auto":
            loss = keras.losses.MeanSquaredError() if regression else \
                keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics == "auto":
            metrics = [] if regression else [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        kwargs.setdefault("jit_compile", xla.can_jit())
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def set_nonfinite(self, nonfinite: str, max_nonfinite: int = 100) -> None:
        """Change compile's `nonfinite` policy without recompiling (the compiled step reads it)."""
        if getattr(self, "_nonfinite_guard", None) is None:
            raise ClassifierError("call compile() first")
        self._nonfinite_guard.set_policy(nonfinite, max_nonfinite)

    def train_step(self, *args):
        """Keras' train step, but a step with a non-finite loss or gradient applies no update
        (see compile's `nonfinite`); its loss is left out of the reported mean. On JAX Keras
        passes (state, data) and the step is funnel_tf.classifier_jax.train_step."""
        if keras.backend.backend() == "jax":
            from funnel_tf.classifier_jax import train_step

            return train_step(self, *args)
        (data,) = args
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        guard = self._nonfinite_guard
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.trainable_weights)
        finite = guard.finite(loss, grads)
        count = tf.cast(tf.shape(y_pred)[0], loss.dtype)
        self._loss_tracker.update_state(tf.where(finite, _unscale(loss), tf.zeros_like(loss)),
                                        sample_weight=tf.where(finite, count, tf.zeros_like(count)))
        guard.apply(self.optimizer, finite, grads, self.trainable_weights)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        """Keras' fit on `(texts, labels)` batches (a tf.data.Dataset) or on texts / `(texts,
        pair_texts)` / a features dict with `y` (then shuffled and batched here; `seed` fixes the
        shuffle). A dataset is taken as already shuffled (no Keras warning about `shuffle`).
        Inputs and labels are checked before Keras compiles anything (see classifier_inputs)."""
        x, y, batch_size = self._labelled(x, y, batch_size, "fit", shuffle=True, seed=kwargs.pop("seed", None))
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)
        if getattr(self, "_nonfinite_guard", None) is None:
            raise ClassifierError("call compile() before fit")
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [self._nonfinite_guard.callback()]
        return super().fit(x, y, batch_size=batch_size, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, verbose=0, **kwargs):
        """Keras' evaluate on the inputs fit takes (checked the same way); quiet unless `verbose`."""
        x, y, batch_size = self._labelled(x, y, batch_size, "evaluate", shuffle=False)
        return super().evaluate(x, y, batch_size=batch_size, verbose=verbose, **kwargs)

    def _labelled(self, x, y, batch_size, what: str, shuffle: bool, seed=None):
        """(x, y, batch_size) for Keras from what fit/evaluate accept, after checking them."""
        if isinstance(x, tf.data.Dataset):
            if y is not None:
                raise ClassifierError(f"{what}: y must be None with a dataset (its elements carry the labels)")
            check_dataset(x, self.num_classes, labelled=True, pair=self.pair)
            return self.preprocessor.map(x), None, None
        if is_features(x):
            check_features(x)
            return x, check_labels(y, self.num_classes, len(x["input_ids"])), batch_size
        texts = as_texts(x, "x", self.pair)
        labels = check_labels(y, self.num_classes, len(texts[0]))
        if not len(labels):
            raise ClassifierError(f"{what}: no texts given")
        inputs = tf.constant(texts[0]) if len(texts) == 1 else (tf.constant(texts[0]), tf.constant(texts[1]))
        data = tf.data.Dataset.from_tensor_slices((inputs, labels))
        if shuffle:
            data = data.shuffle(len(labels), seed=seed)
        return self.preprocessor.map(data.batch(batch_size or 32)), None, None

    def predict(self, x, batch_size=32, verbose=0, **kwargs):
        """Logits [N, C] (numpy) for raw strings: a list, `(texts, pair_texts)`, a features dict,
        or a tf.data.Dataset of string batches (pairs as `((texts, pair_texts),)` elements).
        Checked before Keras compiles anything. Quiet unless `verbose` (Keras' progress bar)."""
        if isinstance(x, (str, bytes)):
            raise ClassifierError("predict takes a list of texts; wrap the one string: predict([text])")
        if isinstance(x, tf.data.Dataset):
            check_dataset(x, self.num_classes, labelled=False, pair=self.pair)
            return super().predict(self.preprocessor.map(x), verbose=verbose, **kwargs)
        if is_features(x):
            check_features(x)
            return super().predict(x, batch_size=batch_size, verbose=verbose, **kwargs)
        texts = as_texts(x, "x", self.pair)
        if not texts[0]:
            return np.zeros([0, self.num_classes], np.float32)
        inputs = tf.constant(texts[0]) if len(texts) == 1 else ((tf.constant(texts[0]), tf.constant(texts[1])),)
        data = tf.data.Dataset.from_tensor_slices(inputs).batch(batch_size)   # texts [N] or ((a, b),)
        return super().predict(self.preprocessor.map(data), verbose=verbose, **kwargs)

    # --------------------------------------------------------------------------------- saving
    def get_config(self):
        """Keras config: the model, the tokenizer's settings (its vocab is a saved asset), labels."""
        config = super().get_config()
        tok = self.tokenizer
        config.update(model=keras.saving.serialize_keras_object(self.model), label_names=self.label_names,
                      pair=self.pair, tokenizer={"lower_case": tok.lower_case, "sequence_length": tok.sequence_length,
                                                 "max_chars_per_word": tok.max_chars_per_word,
                                                 "truncation": tok.truncation})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"))
        clf = cls(model, None, **{k: v for k, v in config.items() if k != "tokenizer"})
        clf._tokenizer_settings = dict(config["tokenizer"])
        return clf

    def save_assets(self, dir_path):
        """`model.save("x.keras")` stores the vocab beside the weights."""
        tf.io.gfile.copy(self.tokenizer.vocab_path, os.path.join(dir_path, "vocab.txt"), overwrite=True)

    def load_assets(self, dir_path):
        """`keras.saving.load_model` rebuilds the tokenizer from the stored vocab (kept in a temp copy,
        as Keras deletes its extraction folder)."""
        folder = tempfile.mkdtemp(prefix="funnel_tf_vocab_")
        vocab = os.path.join(folder, "vocab.txt")
        tf.io.gfile.copy(os.path.join(dir_path, "vocab.txt"), vocab)
        self._set_tokenizer(FunnelTokenizer(vocab, **getattr(self, "_tokenizer_settings", {})))

    def save_pretrained(self, directory: str, overwrite: bool = False) -> str:
        """Weights (our format), vocab.txt + tokenizer_config.json and text_classifier.json.
        A folder that is not empty (other files, or an earlier save) is refused with a
        CheckpointError before anything is written, unless `overwrite=True`: then these files are
        replaced and every other file is kept."""
        from funnel_tf.checkpoints.native import SAVED_FILES, check_save_destination
        from funnel_tf.tokenizer import TOKENIZER_CONFIG_NAME, VOCAB_NAMES

        check_save_destination(directory, SAVED_FILES + (VOCAB_NAMES[0], TOKENIZER_CONFIG_NAME,
                                                         CLASSIFIER_CONFIG_NAME), overwrite)
        self.model.save_pretrained(directory, overwrite=True)
        self.tokenizer.save_pretrained(directory)
        with tf.io.gfile.GFile(os.path.join(directory, CLASSIFIER_CONFIG_NAME), "w") as f:
            f.write(json.dumps({"sequence_length": self.tokenizer.sequence_length, "label_names": self.label_names,
                                "pair": self.pair, "num_classes": self.num_classes}, indent=2) + "\n")
        return directory

    def export(self, export_dir: str, overwrite: bool = False, pair: Optional[bool] = None) -> str:
        """The text-in SavedModel finetune.py --export_dir writes (funnel_tf.export): serving_default
        takes `text` (or `text_a`, `text_b` for pairs); load it with `funnel_tf.serving.load`.
        Its graph tokenizes with this classifier's preprocessor, so it gives predict's features."""
        from funnel_tf.export import ClassifierServing, export_saved_model

        regression = self.num_classes == 1
        names = None if regression else (self.label_names or [str(i) for i in range(self.num_classes)])
        module = ClassifierServing(self.model, self.tokenizer.wordpiece, self.tokenizer.sequence_length,
                                   pair=self.pair if pair is None else pair, label_names=names,
                                   preprocessor=self.preprocessor)
        return export_saved_model(module, export_dir, overwrite=overwrite)


def _unscale(loss):
    """Keras' per-replica loss back to the global mean for its loss tracker (identity on one replica)."""
    try:
        from keras.src.losses.loss import unscale_loss_for_distribution
    except ImportError:  # older Keras 3: no distribution scaling
        return loss
    return unscale_loss_for_distribution(loss)


def _hf_label_names(path: str) -> Optional[list]:
    """Label names from an HF config.json's id2label, unless they are HF's defaults (LABEL_0, ...)."""
    config_path = os.path.join(path, "config.json")
    if not tf.io.gfile.exists(config_path):
        return None
    try:
        with tf.io.gfile.GFile(config_path) as f:
            id2label = json.loads(f.read()).get("id2label")
        names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return None  # the checkpoint loader reports a bad config.json itself
    return None if names == [f"LABEL_{i}" for i in range(len(names))] else names


def _read_classifier_config(path: str) -> dict:
    """What the classifier needs besides the weights (sequence_length, label_names, pair), from
    text_classifier.json (FunnelTextClassifier.save_pretrained) or else task.json (a finetune.py
    run's best/ folder); {} for other folders."""
    config = _read_json_object(os.path.join(path, CLASSIFIER_CONFIG_NAME))
    if config is not None:
        return config
    task = _read_json_object(os.path.join(path, TASK_CONFIG_NAME))
    if task is None or not ("label_names" in task or "regression" in task):
        return {}  # no task.json, or another task's (SQuAD, RACE): nothing classifier-specific
    out = {"pair": bool(task.get("pair", False))}
    if task.get("label_names"):
        out["label_names"] = [str(n) for n in task["label_names"]]
    if task.get("max_seq_length"):
        out["sequence_length"] = int(task["max_seq_length"])
    return out


def _read_json_object(config_path: str) -> Optional[dict]:
    """A JSON object file; None when absent, ClassifierError when it is not a JSON object."""
    if not tf.io.gfile.exists(config_path):
        return None
    try:
        with tf.io.gfile.GFile(config_path) as f:
            config = json.loads(f.read())
    except json.JSONDecodeError as e:
        raise ClassifierError(f"{config_path}: invalid JSON ({e}); fix or delete it") from None
    if not isinstance(config, dict):
        raise ClassifierError(f"{config_path}: expected a JSON object")
    return config


__all__ = ["FunnelTextClassifier"]
