"""SavedModel export with tokenization inside the graph: raw text in, predictions out.

A serving module holds the finetuned Keras model and the WordPiece tokenizer (tensorflow-text ops
+ lookup tables, all saved as graph resources) and exposes one `serve` tf.function:

  classification / regression   serve(text[N])  or  serve(text_a[N], text_b[N])
      -> logits [N, C], probabilities [N, C], label_id [N], label [N] (string)   | score [N]
  SQuAD                         serve(question[N], context[N])
      -> answer [N] (string, "" when predicted unanswerable), answer_start / answer_end [N]
         (byte offsets into context), start_logit / end_logit [N], null_odds [N], has_answer [N]
  RACE                          serve(article[N], question[N], options[N, 4])
      -> logits [N, 4], probabilities [N, 4], answer_id [N], answer [N] ("A".."D")

`export_saved_model` writes it with `serving_default` as the signature, plus `assets.extra/
task.json` describing the task. Loading needs TensorFlow and tensorflow-text (for its ops:
`import tensorflow_text` before `tf.saved_model.load`), nothing from funnel_tf.

Features are built exactly as the training readers build them (same tokenizer, same
`[CLS] A [SEP] B [SEP]` packing and truncation), except that SQuAD serving reads one window: the
context is cut to what fits after the question (no doc-stride windows).
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import tensorflow as tf

from funnel_tf import json_text, storage
from funnel_tf.errors import UserError
from funnel_tf.text.packing import pack_inputs

_LETTERS = ("A", "B", "C", "D")


def clean_web_text_graph(text: tf.Tensor) -> tf.Tensor:
    """In-graph version of `text.classification.clean_web_text` (the original's web cleaning):
    `<br />` / `<p>` -> space, `&quot;` -> `"`, `<a href=...>` and `</a>` dropped, literal `\\n`
    and backslashes -> space, whitespace runs collapsed."""
    text = tf.strings.regex_replace(text, r"<br />|<p>", " ")
    text = tf.strings.regex_replace(text, r"&quot;", '"')
    text = tf.strings.regex_replace(text, r"<a href=[^>]*>|</a>", "")
    text = tf.strings.regex_replace(text, r"\\n|\\", " ")
    text = tf.strings.regex_replace(text, r"\s+", " ")
    return tf.strings.strip(text)


class _Serving(tf.Module):
    """Common parts: the model and tokenizer as tracked attributes, and a task description."""

    def __init__(self, model, tokenizer, seq_len: int, info: dict, name: str):
        super().__init__(name=name)
        self.model = model
        self.tokenizer = tokenizer
        self.seq_len = int(seq_len)
        self.info = dict(info, max_seq_length=self.seq_len)

    @staticmethod
    def _serve_function(fn, *specs):
        """`serve`: `fn` traced for `specs`, without autograph (its graph branches on Python values
        only, and converting the tokenizer's code was about half of the trace)."""
        return tf.function(fn, input_signature=list(specs), autograph=False)

    def _run(self, features):
        return self.model(features, training=False)


class ClassifierServing(_Serving):
    """Single text or text pair -> class probabilities (or a regression score)."""

    def __init__(self, model, tokenizer, seq_len: int, pair: bool,
                 label_names: Optional[Sequence[str]], clean_web_text: bool = False, preprocessor=None):
        super().__init__(model, tokenizer, seq_len,
                         {"kind": "regression" if label_names is None else "classification",
                          "pair": bool(pair), "label_names": list(label_names or []),
                          "clean_web_text": bool(clean_web_text)}, name="classifier_serving")
        self.pair = bool(pair)
        self.clean = bool(clean_web_text)
        # FunnelTextClassifier's preprocessor (its tokenizer's wordpiece is `tokenizer`): the serving
        # graph then builds exactly the features its predict builds.
        self.preprocessor = preprocessor
        self.label_names = None if label_names is None else tf.constant(list(label_names))
        spec = tf.TensorSpec([None], tf.string)
        if self.pair:
            self.serve = self._serve_function(self._serve_pair, spec, spec)
        else:
            self.serve = self._serve_function(self._serve_single, spec)

    def features(self, text_a, text_b=None):
        if self.clean:
            text_a = clean_web_text_graph(text_a)
            text_b = None if text_b is None else clean_web_text_graph(text_b)
        if self.preprocessor is not None:
            return self.preprocessor.features(text_a, text_b)
        tok = self.tokenizer
        seg_a = tok.tokenize(text_a)
        seg_b = tok.tokenize(text_b) if text_b is not None else None
        packed = pack_inputs(seg_a, seg_b, self.seq_len, tok.cls_id, tok.sep_id, pad_id=tok.pad_id)
        return {k: tf.cast(v, tf.int32) for k, v in packed.items()}

    def _outputs(self, features):
        logits = tf.cast(self._run(features)["logits"], tf.float32)   # [N, C]
        if self.label_names is None:
            return {"score": logits[:, 0]}
        label_id = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1),
                "label_id": label_id, "label": tf.gather(self.label_names, label_id)}

    def _serve_single(self, text):
        return self._outputs(self.features(text))

    def _serve_pair(self, text_a, text_b):
        return self._outputs(self.features(text_a, text_b))


class MultipleChoiceServing(_Serving):
    """RACE: article + question + 4 options -> option probabilities."""

    def __init__(self, model, tokenizer, seq_len: int, max_qa_length: int):
        super().__init__(model, tokenizer, seq_len,
                         {"kind": "multiple_choice", "num_options": 4,
                          "max_qa_length": int(max_qa_length)}, name="multiple_choice_serving")
        self.max_qa_length = int(max_qa_length)
        self.letters = tf.constant(list(_LETTERS))
        self.serve = self._serve_function(self._serve, tf.TensorSpec([None], tf.string),
                                          tf.TensorSpec([None], tf.string),
                                          tf.TensorSpec([None, 4], tf.string))

    def features(self, article, question, options):
        from funnel_tf.text.race import encode_race_batch

        q = tf.repeat(question[:, None], 4, axis=1)                       # [N, 4]
        # The original's QA string: fill "_" blanks with the option, else append it.
        # Backslashes in the option are escaped so RE2's rewrite treats them literally.
        opt_rewrite = tf.strings.regex_replace(options, r"\\", r"\\\\")
        filled = tf.map_fn(
            lambda args: tf.strings.regex_replace(args[0], "_", args[1]),
            (tf.reshape(q, [-1]), tf.reshape(opt_rewrite, [-1])),
            fn_output_signature=tf.TensorSpec([], tf.string))
        filled = tf.reshape(filled, tf.shape(q))
        appended = tf.strings.join([q, options], separator=" ")
        has_blank = tf.strings.regex_full_match(q, r"(?s).*_.*")
        qa = tf.where(has_blank, filled, appended)
        return encode_race_batch(self.tokenizer, article, qa, self.seq_len, self.max_qa_length)

    def _serve(self, article, question, options):
        logits = tf.cast(self._run(self.features(article, question, options))["logits"],
                         tf.float32)                                      # [N, 4]
        answer_id = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1),
                "answer_id": answer_id, "answer": tf.gather(self.letters, answer_id)}


class QuestionAnsweringServing(_Serving):
    """SQuAD: question + context -> best span text (one window; see the module docstring)."""

    def __init__(self, model, tokenizer, seq_len: int, max_query_length: int,
                 max_answer_length: int, allow_impossible: bool, null_threshold: float = 0.0):
        super().__init__(model, tokenizer, seq_len,
                         {"kind": "question_answering", "max_query_length": int(max_query_length),
                          "max_answer_length": int(max_answer_length),
                          "allow_impossible": bool(allow_impossible),
                          "null_threshold": float(null_threshold)}, name="qa_serving")
        self.max_query_length = int(max_query_length)
        self.max_answer_length = int(max_answer_length)
        self.allow_impossible = bool(allow_impossible)
        self.null_threshold = float(null_threshold)
        spec = tf.TensorSpec([None], tf.string)
        self.serve = self._serve_function(self._serve, spec, spec)

    def features(self, question, context):
        """-> (model features incl. p_mask, paragraph byte starts / ends [N, seq_len], -1
        outside the paragraph)."""
        tok, seq_len = self.tokenizer, self.seq_len
        q = tf.cast(tok.tokenize(question)[:, :self.max_query_length], tf.int32)   # [N, (q)]
        ids, starts, ends = tok.tokenize_with_offsets(context)                     # [N, (t)]
        room = seq_len - 3 - q.row_lengths()                                       # [N]
        keep = tf.ragged.range(ids.row_lengths()) < tf.expand_dims(room, 1)
        ids = tf.ragged.boolean_mask(tf.cast(ids, tf.int32), keep)
        starts = tf.ragged.boolean_mask(starts, keep)
        ends = tf.ragged.boolean_mask(ends, keep)
        packed = pack_inputs(q, ids, seq_len, tok.cls_id, tok.sep_id, pad_id=tok.pad_id)
        lq = tf.cast(q.row_lengths(), tf.int32)[:, None]                           # [N, 1]
        lc = tf.cast(ids.row_lengths(), tf.int32)[:, None]
        pos = tf.range(seq_len)[None, :]
        in_doc = (pos >= lq + 2) & (pos < lq + 2 + lc)                             # [N, S]
        # SQuAD features' token types: CLS 2, query (+SEP) 1, paragraph (+SEP) 0.
        types = tf.cast(packed["token_type_ids"], tf.int32)
        types = tf.where(types == 0, 1, tf.where(types == 1, 0, types))
        types = tf.where(tf.cast(packed["attention_mask"], tf.bool), types, 0)
        features = {"input_ids": tf.cast(packed["input_ids"], tf.int32),
                    "attention_mask": tf.cast(packed["attention_mask"], tf.int32),
                    "token_type_ids": types,
                    "p_mask": 1 - tf.cast(in_doc | (pos == 0), tf.int32)}
        byte_start = _place(starts, lq + 2, seq_len)                               # [N, S]
        byte_end = _place(ends, lq + 2, seq_len)
        return features, byte_start, byte_end

    def _serve(self, question, context):
        features, byte_start, byte_end = self.features(question, context)
        out = self._run(features)
        start = tf.cast(out["start_logits"], tf.float32)                  # [N, S]
        end = tf.cast(out["end_logits"], tf.float32)
        valid = tf.equal(features["p_mask"], 0) & (tf.range(self.seq_len)[None, :] > 0)
        neg = tf.constant(-1e30, tf.float32)
        s = tf.where(valid, start, neg)
        e = tf.where(valid, end, neg)
        scores = s[:, :, None] + e[:, None, :]                            # [N, S, S]
        i = tf.range(self.seq_len)
        span_ok = (i[None, :] >= i[:, None]) & (i[None, :] - i[:, None] < self.max_answer_length)
        scores = tf.where(span_ok[None], scores, neg)
        flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
        best = tf.argmax(flat, axis=-1, output_type=tf.int32)
        si, ei = best // self.seq_len, best % self.seq_len
        b0 = tf.gather(byte_start, si, batch_dims=1)
        b1 = tf.gather(byte_end, ei, batch_dims=1)
        found = tf.reduce_max(flat, axis=-1) > -1e29
        answer = tf.where(found, tf.strings.substr(context, tf.maximum(b0, 0),
                                                   tf.maximum(b1 - b0, 0)), "")
        if "cls_logits" in out:
            null_odds = tf.cast(out["cls_logits"], tf.float32)
        else:
            null_odds = start[:, 0] + end[:, 0] - tf.reduce_max(flat, axis=-1)
        has_answer = found
        if self.allow_impossible:
            has_answer = found & (null_odds <= self.null_threshold)
        return {"answer": tf.where(has_answer, answer, ""), "answer_start": b0, "answer_end": b1,
                "start_logit": tf.gather(start, si, batch_dims=1),
                "end_logit": tf.gather(end, ei, batch_dims=1),
                "null_odds": null_odds, "has_answer": has_answer}


def _place(values: tf.RaggedTensor, offset: tf.Tensor, seq_len: int) -> tf.Tensor:
    """Ragged int [N, (t)] placed at column `offset[n]` of a [N, seq_len] grid of -1 (int32)."""
    values = tf.cast(values, tf.int32)
    shifted = tf.concat([tf.ragged.range(tf.reshape(offset, [-1])) * 0 - 1, values], axis=1)
    return shifted.to_tensor(-1, shape=[None, seq_len])


# ---------------------------------------------------------------------------------- writing
class ExportError(UserError, FileExistsError):
    """An export_dir that cannot be written as asked (exists, or is not a SavedModel to replace)."""


def is_saved_model_dir(path: str) -> bool:
    """True for a folder holding a SavedModel (saved_model.pb or saved_model.pbtxt)."""
    return storage.exists(path) and any(
        tf.io.gfile.exists(os.path.join(path, name))
        for name in ("saved_model.pb", "saved_model.pbtxt"))


def check_export_dir(export_dir: str, overwrite: bool = False) -> None:
    """Refuse an export_dir that exists, unless `overwrite` and it is a SavedModel: overwriting
    never deletes anything else (a model_dir, a data folder, a typo'd parent folder)."""
    if not storage.exists(export_dir):
        return
    if not overwrite:
        raise ExportError(f"--export_dir {export_dir} already exists; remove it, choose another "
                          f"folder, or pass --overwrite_export to replace the SavedModel in it")
    if not is_saved_model_dir(export_dir):
        raise ExportError(f"--export_dir {export_dir} exists and is not a SavedModel (no "
                          f"saved_model.pb): --overwrite_export only replaces an earlier export; "
                          f"choose another folder")


def export_saved_model(module: _Serving, export_dir: str, overwrite: bool = False) -> str:
    """Save `module` as a SavedModel with a `serving_default` signature; returns export_dir.

    Written to a temporary sibling directory first and renamed at the end, so an interrupted
    export never leaves a half-written SavedModel at `export_dir`. Works on any filesystem
    tf.io.gfile knows (gs://, ram://). `overwrite` replaces an existing SavedModel only.

    Args:
        module: a serving module (ClassifierServing, QuestionAnsweringServing, MultipleChoiceServing).
        export_dir: where the SavedModel goes; it must not exist, unless `overwrite`.
        overwrite: replace an earlier SavedModel at export_dir (never any other folder).

    Returns:
        export_dir, which then holds the SavedModel, assets.extra/task.json and README.txt.
    """
    check_export_dir(export_dir, overwrite)
    tmp = storage.make_temp_dir_beside(export_dir, ".export_")
    try:
        # `serve` itself (input_signature given) rather than its concrete function: traced once,
        # inside the save context, where a concrete function from outside would be traced again.
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
        extra = os.path.join(tmp, "assets.extra")
        tf.io.gfile.makedirs(extra)
        with tf.io.gfile.GFile(os.path.join(extra, "task.json"), "w") as f:
            f.write(json_text.dumps(module.info, indent=2, sort_keys=True) + "\n")
        from funnel_tf.serving import write_readme  # README.txt: how to load this (tensorflow_text first)

        write_readme(tmp, module.info)
        check_export_dir(export_dir, overwrite)  # still true after the (long) save
        storage.replace_dir(tmp, export_dir)
    except BaseException:
        storage.remove_tree(tmp)
        raise
    return export_dir


def read_task_info(export_dir: str) -> dict:
    """The task description written next to an export."""
    with tf.io.gfile.GFile(os.path.join(export_dir, "assets.extra", "task.json")) as f:
        return json.loads(f.read())
