"""SQuAD v1.1 / v2.0: JSON → windowed fixed-shape features, and logits → answer text.

Feature layout (the original `squad.py`): `[CLS] query [SEP] paragraph_window [SEP] pad...`;
the query is cut to its first `max_query_length` tokens and the paragraph is split into windows
of `seq_len - len(query) - 3` tokens every `doc_stride` tokens.
Token types follow the original too: CLS 2, **query (+ its SEP) 1, paragraph (+ final SEP) 0**,
pad 0. (The funnel attention only compares types for equality, so the 1/0 choice cannot change a
model's output; we keep the original's so features match it id for id.)

Per feature (window), model inputs and labels:
  input_ids, attention_mask (1 = real), token_type_ids, p_mask (1 = cannot be part of an answer:
  query, SEPs, padding; 0 = CLS and paragraph) — all int32 [seq_len];
  start_positions, end_positions int32 [] (index into the window; CLS index 0 when the window
  does not contain the whole answer or the question is impossible), is_impossible int32 [] (1 in
  exactly those cases), example_weight float32 [] (0 for eval padding);
and metadata for `postprocess_predictions`: example_index int32 [], token_char_start /
token_char_end int32 [seq_len] (character span `context[start:end]` of each paragraph token, -1
elsewhere), token_is_max_context int32 [seq_len].

Tokenization, byte→character offset mapping, windowing and labels all run in-graph (tf.data);
Python only parses the JSON and, after prediction, turns logits into text.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from funnel_tf.text.squad_json import SquadExample

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids", "p_mask")
LABEL_KEYS = ("start_positions", "end_positions", "is_impossible")
METADATA_KEYS = ("example_index", "token_char_start", "token_char_end", "token_is_max_context")
CLS_INDEX = 0
QUERY_TYPE_ID = 1
PARAGRAPH_TYPE_ID = 0
CLS_TYPE_ID = 2


# --------------------------------------------------------------------------------------------
# In-graph features
# --------------------------------------------------------------------------------------------
def _byte_to_char(texts: tf.Tensor, byte_offsets: tf.RaggedTensor) -> tf.RaggedTensor:
    """Byte offsets [N, (t)] into UTF-8 `texts` [N] → code point offsets (Python str indices).

    Rows are laid end to end (each shifted by the bytes of the rows before it) so one sorted
    `searchsorted` serves the whole batch; an offset equal to a row's byte length maps to its
    character count.
    """
    _, char_starts = tf.strings.unicode_decode_with_offsets(texts, "UTF-8")    # [N, (chars)]
    byte_len = tf.strings.length(texts, unit="BYTE")
    row_base = tf.cumsum(tf.cast(byte_len, tf.int64), exclusive=True)         # [N]
    flat_starts = char_starts + tf.expand_dims(row_base, 1)                   # [N, (chars)]
    token_row = byte_offsets.value_rowids()
    flat_query = byte_offsets.flat_values + tf.gather(row_base, token_row)
    global_char = tf.searchsorted(flat_starts.flat_values, flat_query, side="left",
                                  out_type=tf.int64)
    local = global_char - tf.gather(flat_starts.row_splits, token_row)
    return byte_offsets.with_flat_values(tf.cast(local, tf.int32))


def _tokenize_batch(get_tokenizer, max_query_length: int):
    def fn(batch):
        tokenizer = get_tokenizer()
        q_ids = tokenizer.tokenize(batch["question"])[:, :max_query_length]    # [b, (q)]
        ids, starts, ends = tokenizer.tokenize_with_offsets(batch["context"])   # [b, (t)]
        out = dict(batch)
        del out["question"], out["context"]
        out["query_ids"] = tf.cast(q_ids, tf.int32)
        out["context_ids"] = tf.cast(ids, tf.int32)
        out["context_char_start"] = _byte_to_char(batch["context"], starts)
        out["context_char_end"] = _byte_to_char(batch["context"], ends)
        return out
    return fn


def answer_token_span(char_start: tf.Tensor, char_end: tf.Tensor, ans_start: tf.Tensor,
                      ans_end: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Token span [first, last] (inclusive) covering answer characters [ans_start, ans_end).

    First = first token ending after ans_start, last = last token starting before ans_end;
    (-1, -1) when there is no answer or no token overlaps it.
    """
    n = tf.shape(char_start, out_type=tf.int32)[0]
    idx = tf.range(n)
    first = tf.reduce_min(tf.where(char_end > ans_start, idx, n))
    last = tf.reduce_max(tf.where(char_start < ans_end, idx, -1))
    ok = (ans_start >= 0) & (first < n) & (last >= 0) & (first <= last)
    return tf.where(ok, first, -1), tf.where(ok, last, -1)


def make_windows(query_ids: tf.Tensor, context_ids: tf.Tensor, char_start: tf.Tensor,
                 char_end: tf.Tensor, ans_start: tf.Tensor, ans_end: tf.Tensor, *, seq_len: int,
                 doc_stride: int, cls_id: int, sep_id: int, pad_id: int = 0
                 ) -> Dict[str, tf.Tensor]:
    """One example → its K windows as dense [K, seq_len] features (see module doc).

    Windows start every min(doc_stride, room) tokens, room = seq_len - len(query) - 3, until one
    reaches the paragraph's end (BERT/original rule). `token_is_max_context` marks, for every
    paragraph token, the window where min(left, right context) + 0.01 * window length is largest
    (first such window on ties), computed in exact integers.
    """
    lq = tf.shape(query_ids)[0]
    t = tf.shape(context_ids)[0]
    room = seq_len - lq - 3
    stride = tf.minimum(doc_stride, room)
    k = tf.where(t > room, (t - room + stride - 1) // stride + 1, 1)
    starts = tf.range(k) * stride                                   # [K]
    lens = tf.minimum(room, t - starts)                             # [K]
    pos = tf.range(seq_len)[None, :]                                # [1, S]
    doc_off = lq + 2
    rel = pos - doc_off                                             # [1, S]
    in_doc = (rel >= 0) & (rel < lens[:, None])                     # [K, S]
    doc_idx = tf.clip_by_value(starts[:, None] + rel, 0, tf.maximum(t - 1, 0))
    q_pad = tf.concat([query_ids, [pad_id]], 0)
    c_ids = tf.concat([context_ids, [pad_id]], 0)
    c_start = tf.concat([char_start, [-1]], 0)
    c_end = tf.concat([char_end, [-1]], 0)
    is_query = (pos >= 1) & (pos <= lq)
    final_sep = rel == lens[:, None]
    q_tok = tf.gather(q_pad, tf.clip_by_value(pos - 1, 0, lq))
    ids = tf.where(in_doc, tf.gather(c_ids, doc_idx),
                   tf.where(final_sep, sep_id, pad_id))
    ids = tf.where(is_query, q_tok, ids)
    ids = tf.where(pos == lq + 1, sep_id, ids)
    ids = tf.where(pos == 0, cls_id, ids)
    attention_mask = tf.cast(pos <= doc_off + lens[:, None], tf.int32)
    token_type_ids = tf.where(pos == 0, CLS_TYPE_ID,
                              tf.where(pos <= lq + 1, QUERY_TYPE_ID, PARAGRAPH_TYPE_ID))
    token_type_ids = tf.broadcast_to(token_type_ids, [k, seq_len])
    p_mask = 1 - tf.cast(in_doc | (pos == 0), tf.int32)
    tok_start = tf.where(in_doc, tf.gather(c_start, doc_idx), -1)
    tok_end = tf.where(in_doc, tf.gather(c_end, doc_idx), -1)

    # Max-context window per paragraph token, score*100 as an exact integer.
    tok = tf.range(t)[None, :]                                      # [1, T]
    left = tok - starts[:, None]
    right = starts[:, None] + lens[:, None] - 1 - tok
    inside = (left >= 0) & (right >= 0)                             # [K, T]
    score = tf.where(inside, 100 * tf.minimum(left, right) + lens[:, None], -1)
    best = tf.reduce_max(score, axis=0, keepdims=True)
    window_ids = tf.range(k)[:, None]
    best_window = tf.reduce_min(tf.where((score == best) & inside, window_ids, k), axis=0)
    best_window = tf.concat([best_window, [-1]], 0)
    max_ctx = in_doc & (tf.gather(best_window, doc_idx) == window_ids)

    tok_s, tok_e = answer_token_span(char_start, char_end, ans_start, ans_end)
    contained = (tok_s >= 0) & (tok_s >= starts) & (tok_e < starts + lens)   # [K]
    start_pos = tf.where(contained, tok_s - starts + doc_off, CLS_INDEX)
    end_pos = tf.where(contained, tok_e - starts + doc_off, CLS_INDEX)
    return {
        "input_ids": ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
        "p_mask": p_mask, "start_positions": start_pos, "end_positions": end_pos,
        "is_impossible": 1 - tf.cast(contained, tf.int32),
        "token_char_start": tok_start, "token_char_end": tok_end,
        "token_is_max_context": tf.cast(max_ctx, tf.int32),
    }


def _columns(examples: Sequence[SquadExample]) -> Dict[str, np.ndarray]:
    spans = np.array([ex.answer_span for ex in examples], np.int32).reshape([-1, 2])
    return {
        "question": np.array([ex.question for ex in examples], dtype=object),
        "context": np.array([ex.context for ex in examples], dtype=object),
        "answer_char_start": spans[:, 0],
        "answer_char_end": spans[:, 1],
        "example_index": np.arange(len(examples), dtype=np.int32),
    }


def squad_feature_dataset(examples: Sequence[SquadExample], tokenizer, *, seq_len: int = 512,
                          doc_stride: int = 128, max_query_length: int = 64,
                          shuffle: bool = False, seed: Optional[int] = None,
                          repeat: bool = False, tokenize_chunk: int = 32) -> tf.data.Dataset:
    """Streaming dataset of per-window feature dicts (model inputs, labels and metadata).

    For training: `shuffle`/`repeat` act on examples before tokenization; shuffle the windows
    again and batch with `drop_remainder=True` downstream. Every element has static shapes.
    """
    ds = squad_question_features(examples, tokenizer, seq_len=seq_len, doc_stride=doc_stride,
                                 max_query_length=max_query_length, shuffle=shuffle, seed=seed,
                                 repeat=repeat, tokenize_chunk=tokenize_chunk)
    return ds.unbatch().prefetch(tf.data.AUTOTUNE)


def squad_question_features(examples: Sequence[SquadExample], tokenizer, *, seq_len: int = 512,
                            doc_stride: int = 128, max_query_length: int = 64,
                            shuffle: bool = False, seed: Optional[int] = None,
                            repeat: bool = False, tokenize_chunk: int = 32) -> tf.data.Dataset:
    """One element per question: its K windows' features [K, seq_len] / [K] (what
    `squad_feature_dataset` unbatches; the unit of finetuning feature records)."""
    if not 0 < max_query_length <= seq_len - 4:
        raise ValueError(f"max_query_length={max_query_length} must be in [1, seq_len - 4] "
                         f"so each window keeps at least one paragraph token")
    if doc_stride < 1:
        raise ValueError(f"doc_stride must be >= 1, got {doc_stride}")
    if not examples:
        raise ValueError("no SQuAD examples")
    ds = tf.data.Dataset.from_tensor_slices(_columns(examples))
    if shuffle:
        ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # Both maps are traced once per tokenizer, lengths and input signature and shared by the
    # run's datasets (packing.traced_per_tokenizer).
    from funnel_tf.text.packing import traced_per_tokenizer

    tokenize = traced_per_tokenizer(
        tokenizer, ("squad_tokens", max_query_length),
        lambda get_tokenizer: _tokenize_batch(get_tokenizer, max_query_length))
    ds = ds.batch(tokenize_chunk).map(tokenize, num_parallel_calls=tf.data.AUTOTUNE).unbatch()

    def make(get_tokenizer):
        def windows(ex):
            tok = get_tokenizer()
            feats = make_windows(ex["query_ids"], ex["context_ids"], ex["context_char_start"],
                                 ex["context_char_end"], ex["answer_char_start"],
                                 ex["answer_char_end"], seq_len=seq_len, doc_stride=doc_stride,
                                 cls_id=tok.cls_id, sep_id=tok.sep_id, pad_id=tok.pad_id)
            k = tf.shape(feats["input_ids"])[0]
            feats["example_index"] = tf.fill([k], ex["example_index"])
            feats["example_weight"] = tf.ones([k], tf.float32)
            return {name: tf.ensure_shape(v, [None, seq_len] if v.shape.rank == 2 else [None])
                    for name, v in feats.items()}                       # [K, seq_len] / [K]
        return windows

    windows = traced_per_tokenizer(tokenizer, ("squad_windows", seq_len, doc_stride), make)
    return ds.map(windows, num_parallel_calls=tf.data.AUTOTUNE)


@dataclasses.dataclass
class SquadFeatures:
    """All windows of a set of examples as numpy arrays [F, ...] (for evaluation/prediction)."""

    arrays: Dict[str, np.ndarray]
    seq_len: int
    cls_id: int
    sep_id: int
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.arrays["input_ids"])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def to_dataset(self, batch_size: Optional[int] = None,
                   pad_to_multiple_of: Optional[int] = None,
                   keys: Sequence[str] = MODEL_KEYS + LABEL_KEYS + ("example_weight",
                                                                   "example_index"),
                   ) -> tf.data.Dataset:
        """Features in order, padded with weight-0 windows (`[CLS] [SEP] [SEP]`, example_index -1)
        to a multiple of `pad_to_multiple_of`, batched with drop_remainder when `batch_size`."""
        n = len(self)
        n_pad = (-n) % pad_to_multiple_of if pad_to_multiple_of else 0
        cols = {}
        for key in keys:
            arr = self.arrays[key]
            pad = np.zeros((n_pad,) + arr.shape[1:], arr.dtype)
            if key == "input_ids":
                pad[:] = self.pad_id
                pad[:, 0], pad[:, 1:3] = self.cls_id, self.sep_id
            elif key == "attention_mask":
                pad[:, :3] = 1
            elif key in ("p_mask",):
                pad[:, 1:] = 1
            elif key == "token_type_ids":
                pad[:, 0], pad[:, 1] = CLS_TYPE_ID, QUERY_TYPE_ID
            elif key == "is_impossible":
                pad[:] = 1
            elif key in ("example_index", "token_char_start", "token_char_end"):
                pad[:] = -1
            cols[key] = np.concatenate([arr, pad], axis=0)
        ds = tf.data.Dataset.from_tensor_slices(cols)
        if batch_size:
            ds = ds.batch(batch_size, drop_remainder=True)
        return ds.prefetch(tf.data.AUTOTUNE)


def build_squad_features(examples: Sequence[SquadExample], tokenizer, *, seq_len: int = 512,
                         doc_stride: int = 128, max_query_length: int = 64,
                         chunk: int = 256) -> SquadFeatures:
    """Runs `squad_feature_dataset` once (in-graph tokenization) and keeps the arrays."""
    ds = squad_feature_dataset(examples, tokenizer, seq_len=seq_len, doc_stride=doc_stride,
                               max_query_length=max_query_length)
    parts: Dict[str, list] = collections.defaultdict(list)
    for batch in ds.batch(chunk).as_numpy_iterator():
        for k, v in batch.items():
            parts[k].append(v)
    return SquadFeatures({k: np.concatenate(v, 0) for k, v in parts.items()}, seq_len,
                         tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id)


# --------------------------------------------------------------------------------------------
# Logits → answers
# --------------------------------------------------------------------------------------------
def postprocess_predictions(examples: Sequence[SquadExample], features: SquadFeatures,
                            start_logits, end_logits, cls_logits=None, n_best: int = 20,
                            max_answer_length: int = 30, null_threshold: Optional[float] = 0.0,
                            allow_impossible: Optional[bool] = None
                            ) -> Tuple[Dict[str, str], Dict[str, float]]:
    """Best answer text per question id, and its null odds (higher = more likely no answer).

    `start_logits`/`end_logits` are [F', seq_len] rows aligned with `features` (F' >= F; extra
    rows from eval padding are ignored). A span is valid when both ends are paragraph tokens
    (p_mask 0, not CLS), end >= start, its length <= `max_answer_length` and the start token has
    its max context in that window; the best valid span over the question's windows (top
    `n_best` starts × `n_best` ends each, by start + end logit) gives the text
    `context[token_char_start[s]:token_char_end[e]]`.

    null odds: with `cls_logits` [F'] (an answerability logit, e.g. the original's answer-class
    head; higher = no answer) the minimum over the question's windows, as the original; without,
    min over windows of (start[CLS] + end[CLS]) minus the best span score.
    When impossible questions are allowed (v2.0: pass `SquadData.allow_impossible`; None means
    "if any example is impossible"), a question whose odds exceed `null_threshold` is predicted
    "". Pass `null_threshold=None` to always get the best span: that is the original's
    predictions.json, whose null threshold the v2.0 evaluator (`metrics.squad.evaluate_v2` with
    `null_odds`) searches itself — thresholded predictions would spoil that search.
    """
    arr = features.arrays
    n_feat = len(features)
    start_logits = np.asarray(start_logits, np.float32)
    end_logits = np.asarray(end_logits, np.float32)
    if start_logits.shape[0] < n_feat or end_logits.shape != start_logits.shape or (
            start_logits.shape[1] != features.seq_len):
        raise ValueError(f"logits {start_logits.shape}/{end_logits.shape} do not cover "
                         f"{n_feat} features of length {features.seq_len}")
    if cls_logits is not None:
        cls_logits = np.asarray(cls_logits, np.float32).reshape([-1])
        if cls_logits.shape[0] < n_feat:
            raise ValueError(f"cls_logits has {cls_logits.shape[0]} rows, need {n_feat}")
    if allow_impossible is None:
        allow_impossible = any(ex.is_impossible for ex in examples)
    by_example: Dict[int, List[int]] = collections.defaultdict(list)
    for f, e in enumerate(arr["example_index"][:n_feat]):
        if e >= 0:
            by_example[int(e)].append(f)

    predictions: Dict[str, str] = collections.OrderedDict()
    null_odds: Dict[str, float] = collections.OrderedDict()
    for e, ex in enumerate(examples):
        feats = by_example.get(e, [])
        if not feats:
            raise ValueError(f"no features for example {e} ({ex.qas_id}); were the features "
                             f"built from these examples?")
        best_score, best_text = -1e6, ""
        null_score = math.inf
        for f in feats:
            s_log, e_log = start_logits[f], end_logits[f]
            valid = arr["p_mask"][f] == 0
            valid[CLS_INDEX] = False
            max_ctx = arr["token_is_max_context"][f] == 1
            null_score = min(null_score, float(s_log[CLS_INDEX] + e_log[CLS_INDEX])
                             if cls_logits is None else float(cls_logits[f]))
            top_s = [i for i in np.argsort(-s_log, kind="stable")[:n_best]
                     if valid[i] and max_ctx[i]]
            top_e = [j for j in np.argsort(-e_log, kind="stable")[:n_best] if valid[j]]
            for i in top_s:
                for j in top_e:
                    if j < i or j - i + 1 > max_answer_length:
                        continue
                    score = float(s_log[i] + e_log[j])
                    if score > best_score:
                        best_score = score
                        best_text = ex.context[int(arr["token_char_start"][f, i]):
                                               int(arr["token_char_end"][f, j])]
        odds = null_score if cls_logits is not None else null_score - best_score
        null_odds[ex.qas_id] = float(odds)
        if allow_impossible and null_threshold is not None and odds > null_threshold:
            predictions[ex.qas_id] = ""
        else:
            predictions[ex.qas_id] = best_text
    return predictions, null_odds
