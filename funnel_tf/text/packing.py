"""Pack one or two token segments into fixed-length ``[CLS] A [SEP] (B [SEP])`` features.

Conventions are the Funnel-Transformer reference's: token type 2 for CLS, 0 for A and its SEP,
1 for B and its SEP, 0 for padding; ``attention_mask`` is 1 on real tokens. Everything is
vectorised over the batch (no Python per example), so it runs inside ``tf.data.Dataset.map``
on batched ragged ids and yields static ``[N, seq_len]`` shapes.
"""

from __future__ import annotations

import weakref
from typing import Callable, Hashable, Optional

import tensorflow as tf

# tokenizer -> {key: tf.function}; see `traced_per_tokenizer`.
_TRACED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def traced_per_tokenizer(tokenizer, key: Hashable, make: Callable) -> Callable:
    """`tf.function(make(get_tokenizer))`, one per (tokenizer, key): a run's datasets (train,
    eval, predict) map the same in-graph encoder, traced once per input signature instead of
    once per dataset (tracing the tokenizer's graph is most of building one). The cache holds
    the tokenizer weakly; `make` gets a function that returns it. Traced without autograph: the
    encoders branch on Python values only, and converting the tokenizer's code took half of
    each trace (1.5 -> 0.7 CPU-s for a single-text encoder)."""
    try:
        fns, get = _TRACED.setdefault(tokenizer, {}), weakref.ref(tokenizer)
    except TypeError:  # a tokenizer that is not hashable or weakly referable: not shared
        fns, get = {}, lambda: tokenizer
    if key not in fns:
        fns[key] = tf.function(make(get), autograph=False)
    return fns[key]


CLS_TYPE_ID = 2
A_TYPE_ID = 0
B_TYPE_ID = 1

_TRUNCATIONS = ("longest_first", "keep_tail_a", "hf_longest_first")


def pair_lengths_longest_first(len_a: tf.Tensor, len_b: tf.Tensor, budget: int):
    """Lengths BERT's ``_truncate_seq_pair`` leaves: pop from the longer segment, B on ties.

    Closed form of the pop loop (so it vectorises): with ``half_b = budget // 2`` and
    ``half_a = budget - half_b``, A keeps ``min(len_a, max(half_a, budget - len_b))``.
    """
    len_a = tf.cast(len_a, tf.int64)
    len_b = tf.cast(len_b, tf.int64)
    budget = tf.constant(budget, tf.int64)
    half_a = budget - budget // 2
    fits = len_a + len_b <= budget
    new_a = tf.minimum(len_a, tf.maximum(half_a, budget - len_b))
    new_a = tf.where(fits, len_a, new_a)
    new_b = tf.where(fits, len_b, budget - new_a)
    return new_a, new_b


def pair_lengths_hf(len_a: tf.Tensor, len_b: tf.Tensor, budget: int):
    """Lengths HuggingFace's (Rust) tokenizers leave with ``truncation="longest_first"``: the
    shorter segment (A on ties) keeps up to ``budget // 2`` tokens, the longer one the rest.

    Differs from BERT's pop loop (``pair_lengths_longest_first``) by one token when the budget is
    odd and both segments exceed half of it: HF gives the extra token to the longer segment.
    """
    len_a = tf.cast(len_a, tf.int64)
    len_b = tf.cast(len_b, tf.int64)
    budget = tf.constant(budget, tf.int64)
    fits = len_a + len_b <= budget
    a_shorter = len_a <= len_b
    short_keep = tf.minimum(tf.minimum(len_a, len_b), budget // 2)
    new_a = tf.where(fits, len_a, tf.where(a_shorter, short_keep, budget - short_keep))
    new_b = tf.where(fits, len_b, tf.where(a_shorter, budget - short_keep, short_keep))
    return new_a, new_b


def _keep(segment: tf.RaggedTensor, keep_len: tf.Tensor, from_tail: bool) -> tf.RaggedTensor:
    """Keeps the first (or last) ``keep_len[i]`` tokens of each row of ``segment``."""
    pos = tf.ragged.range(segment.row_lengths())  # [N, (len)]
    if from_tail:
        keep = pos >= tf.expand_dims(segment.row_lengths() - keep_len, 1)
    else:
        keep = pos < tf.expand_dims(keep_len, 1)
    return tf.ragged.boolean_mask(segment, keep)


def _as_ragged_int32(x) -> tf.RaggedTensor:
    if not isinstance(x, tf.RaggedTensor):
        x = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(x))
    if x.shape.rank != 2:
        raise ValueError(f"segments must be ragged [N, (tokens)], got rank {x.shape.rank}")
    return tf.cast(x, tf.int32).with_row_splits_dtype(tf.int64)


def truncate_segments(segment_a: tf.RaggedTensor, segment_b: Optional[tf.RaggedTensor], budget: int,
                      truncation: str = "longest_first"):
    """Trims A (and B) so their total length fits ``budget`` tokens per row.

    ``longest_first``: BERT's pair rule, both segments cut at their end.
    ``keep_tail_a``: same lengths, but A keeps its *last* tokens (RACE's question+option segment);
    B is still cut at its end.
    ``hf_longest_first``: HuggingFace tokenizers' pair rule (``pair_lengths_hf``), both cut at their end.
    """
    if truncation not in _TRUNCATIONS:
        raise ValueError(f"truncation must be one of {_TRUNCATIONS}, got {truncation!r}")
    tail_a = truncation == "keep_tail_a"
    len_a = segment_a.row_lengths()
    if segment_b is None:
        new_a = tf.minimum(len_a, budget)
        return _keep(segment_a, new_a, tail_a), None
    lengths = pair_lengths_hf if truncation == "hf_longest_first" else pair_lengths_longest_first
    new_a, new_b = lengths(len_a, segment_b.row_lengths(), budget)
    return _keep(segment_a, new_a, tail_a), _keep(segment_b, new_b, from_tail=False)


def pack_inputs(segment_a: tf.RaggedTensor, segment_b: Optional[tf.RaggedTensor], seq_len: int,
                cls_id: int, sep_id: int, pad_id: int = 0, truncation: str = "longest_first") -> dict:
    """Ragged ids ``[N, (a)]`` (+ ``[N, (b)]``) -> fixed-length features.

    Returns ``{"input_ids", "attention_mask", "token_type_ids"}``, each int32 ``[N, seq_len]``:
    ``[CLS] A [SEP] (B [SEP])`` then ``pad_id``; types CLS 2, A(+SEP) 0, B(+SEP) 1, pad 0.
    Pairs are truncated to ``seq_len - 3`` with ``truncation`` (see ``truncate_segments``),
    single segments to ``seq_len - 2``.
    """
    seq_len = int(seq_len)
    n_special = 2 if segment_b is None else 3
    if seq_len <= n_special:
        raise ValueError(f"seq_len={seq_len} leaves no room for tokens ({n_special} specials)")
    segment_a = _as_ragged_int32(segment_a)
    if segment_b is not None:
        segment_b = _as_ragged_int32(segment_b)
    segment_a, segment_b = truncate_segments(segment_a, segment_b, seq_len - n_special, truncation)

    batch = segment_a.nrows()
    one = tf.ones([batch, 1], tf.int32)
    cls = tf.RaggedTensor.from_tensor(one * cls_id).with_row_splits_dtype(tf.int64)
    sep = tf.RaggedTensor.from_tensor(one * sep_id).with_row_splits_dtype(tf.int64)
    pieces = [cls, segment_a, sep]
    types = [tf.ones_like(cls) * CLS_TYPE_ID, tf.ones_like(segment_a) * A_TYPE_ID,
             tf.ones_like(sep) * A_TYPE_ID]
    if segment_b is not None:
        pieces += [segment_b, sep]
        types += [tf.ones_like(segment_b) * B_TYPE_ID, tf.ones_like(sep) * B_TYPE_ID]
    ids = tf.concat(pieces, axis=1)  # [N, (len)]
    type_ids = tf.concat(types, axis=1)
    shape = [None, seq_len]
    input_ids = ids.to_tensor(default_value=pad_id, shape=shape)  # [N, seq_len]
    token_type_ids = type_ids.to_tensor(default_value=0, shape=shape)
    attention_mask = tf.ones_like(ids).to_tensor(default_value=0, shape=shape)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
    }


__all__ = ["pack_inputs", "truncate_segments", "pair_lengths_longest_first", "pair_lengths_hf",
           "CLS_TYPE_ID", "A_TYPE_ID", "B_TYPE_ID"]
