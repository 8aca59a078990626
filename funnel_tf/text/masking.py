"""Online MLM masking for ``tf.data`` with static shapes (the original's input_func_builder, batched).

``MlmMasker`` maps a batch ``{"input_ids", "token_type_ids", ("attention_mask")}`` of shape
``[B, L]`` to the training engine's feature contract::

    input_ids        int32   [B, L]  corrupted ids (80% [MASK], 10% random id, 10% unchanged)
    attention_mask   int32   [B, L]  1 = real token (masked positions stay 1)
    token_type_ids   int32   [B, L]
    masked_positions int32   [B, P]  target positions, ascending, zero-padded
    masked_ids       int32   [B, P]  original ids at those positions, zero-padded
    masked_weights   float32 [B, P]  1 for a real prediction, 0 for padding

with ``P = num_predict`` (85 at L=512, scaled as round(L * 85 / 512)). [CLS], [SEP] and padding
are never targets. Strategies:

- ``single_token``: tf-text's ``mask_language_model`` with a keyed ``MaskValuesChooser`` and a
  reproducible ``RandomItemSelector`` (``ReproducibleItemSelector``; up to P random non-special
  tokens).
- ``word_span``: the original's whole-word spans of 1-5 words with P(len) ∝ 1/(len+1), laid out in
  regions of ~len*c words (c = (L+1-stride)/P/1.2) with a random left context, shuffled and
  accepted token by token up to P; the rest of the budget is filled with single tokens
  (``ReproducibleItemSelector`` again); corruption by ``KeyedMaskValuesChooser``. One deliberate difference:
  a span may end at the last word (the original's ``end < len(boundary) - 1`` never picks it).

``truncate_stride`` > 1 applies the original's truncation for pooling first: the last ``stride``
positions become ``[SEP]`` + padding, so the tokens that truncate-seq pooling drops are never
predicted. Everything is vectorised over the batch; no Python runs per example.

Randomness is stateless: ``masker(batch, seed=key)`` is a pure function of the batch and the int
``[2]`` key (the reader derives it from the run's seed and the batch's index in the input order,
``batch_key``), so batches can be masked in parallel and a resumed run re-creates the masks of any
batch without masking the ones before it. Without a key one is drawn from TF's global generator
(ad-hoc use; not reproducible across processes).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from funnel_tf.errors import UserError

MASKING_STRATEGIES = ("single_token", "word_span")
_PREDICT_PER_512 = 85


def num_predictions_for(seq_len: int) -> int:
    """The original's 85 targets per 512 tokens, scaled to ``seq_len`` (at least 1)."""
    return max(1, int(round(seq_len * _PREDICT_PER_512 / 512)))


def word_start_table(vocab: Sequence[str], special_tokens: Sequence[str] = ()) -> np.ndarray:
    """bool [V]: True for ids that begin a whole word (not a ``##`` piece, not a special token)."""
    specials = set(special_tokens)
    return np.array([not (t.startswith("##") or t in specials) for t in vocab], dtype=bool)


def span_length_probs(min_words: int = 1, max_words: int = 5) -> np.ndarray:
    """P(len) ∝ 1/(len+1) over [min_words, max_words] (0.345/0.230/0.172/0.138/0.115 for 1..5)."""
    lens = np.arange(min_words, max_words + 1)
    p = 1.0 / (lens + 1.0)
    return p / p.sum()


def random_key() -> tf.Tensor:
    """An int64 [2] stateless key from TF's global generator (for calls that pass no key)."""
    return tf.random.uniform([2], 0, 2 ** 31 - 1, dtype=tf.int64)


def batch_key(seed: int, batch_index, stream: int = 0) -> tf.Tensor:
    """int64 [2] key of one batch: ``seed`` folded with ``stream`` (e.g. the input pipeline id,
    so hosts draw differently) and the batch's index in that stream's input order."""
    key = tf.random.experimental.stateless_fold_in(
        tf.constant([int(seed) & 0x7FFFFFFF, (int(seed) >> 31) & 0x7FFFFFFF], tf.int64), stream)
    return tf.random.experimental.stateless_fold_in(key, tf.cast(batch_index, tf.int64))


class ReproducibleItemSelector(tf_text.RandomItemSelector):
    """tf-text's ``RandomItemSelector`` (same arguments, same choice: a uniformly random
    ``min(ceil(n * selection_rate), max_selections_per_batch)`` of each row's n selectable items),
    drawn from a stateless key (``seed``, int [2]) and vectorised.

    tf-text shuffles each row with ``tf.random.shuffle`` inside a ``map_fn``, whose iterations run
    in parallel on the one op's random stream: which row gets which numbers depends on thread
    timing, so the same seed gave other masks on every run (and a resumed run other masks than the
    uninterrupted one). Here one uniform key per item is drawn for the whole batch with
    ``stateless_uniform`` (the same numbers for the same key, on any thread) and a row's items with
    the smallest keys are selected. ``seed=None`` draws a key from TF's global generator.
    Only ``axis=1`` of a ragged-rank-1 ``[B, (L)]`` tensor, as masking uses it."""

    def __init__(self, max_selections_per_batch, selection_rate, unselectable_ids=None,
                 seed=None):
        super().__init__(max_selections_per_batch, selection_rate, unselectable_ids=unselectable_ids)
        self._seed = seed

    def get_selection_mask(self, input_ids: tf.RaggedTensor, axis: int) -> tf.RaggedTensor:
        if axis != 1 or input_ids.ragged_rank != 1 or input_ids.flat_values.shape.rank != 1:
            raise ValueError("ReproducibleItemSelector selects along axis 1 of a [B, (L)] tensor")
        seed = random_key() if self._seed is None else self._seed
        selectable = self.get_selectable(input_ids, axis).to_tensor(default_value=False)  # [B, L]
        uniform = tf.random.stateless_uniform(tf.shape(selectable), seed=seed)          # [B, L]
        keys = tf.where(selectable, uniform, 2.0)                                       # [B, L]
        rank = tf.argsort(tf.argsort(keys, axis=1, stable=True), axis=1, stable=True)   # [B, L]
        count = tf.reduce_sum(tf.cast(selectable, tf.float32), axis=1)                # [B]
        take = tf.minimum(tf.math.ceil(count * self.selection_rate),
                          tf.cast(self.max_selections_per_batch, tf.float32))         # [B]
        chosen = selectable & (tf.cast(rank, tf.float32) < take[:, None])             # [B, L]
        return tf.RaggedTensor.from_tensor(chosen, lengths=input_ids.row_lengths())


class KeyedMaskValuesChooser(tf_text.MaskValuesChooser):
    """tf-text's ``MaskValuesChooser`` (each target: ``mask_token_rate`` [MASK], ``random_token_rate``
    a uniformly random id, the rest unchanged) drawing from a stateless key instead of the global
    generator, so the corruption is a pure function of (targets, key)."""

    def __init__(self, vocab_size, mask_token, mask_token_rate=0.8, random_token_rate=0.1, seed=None):
        super().__init__(vocab_size, mask_token, mask_token_rate, random_token_rate)
        self._seed = seed

    def get_mask_values(self, masked_lm_ids: tf.RaggedTensor) -> tf.RaggedTensor:
        seed = random_key() if self._seed is None else self._seed
        split = tf.random.experimental.stateless_split(seed, 2)
        flat = masked_lm_ids.flat_values                                              # [K]
        u = tf.random.stateless_uniform(tf.shape(flat), seed=split[0])                # [K]
        random_ids = tf.random.stateless_uniform(tf.shape(flat), seed=split[1], minval=0,
                                                 maxval=self.vocab_size, dtype=flat.dtype)
        m, r = self._mask_token_rate, self._random_token_rate
        values = tf.where(u < m, tf.cast(self.mask_token, flat.dtype),
                          tf.where((u > m) & (u < m + r), random_ids, flat))
        return masked_lm_ids.with_flat_values(values)


class MaskingError(UserError, ValueError):
    """Masking settings that cannot work (strategy, number of targets, stride)."""


class MlmMasker:
    """Callable for ``Dataset.map`` after batching: pretraining features -> MLM features."""

    def __init__(self, vocab_size: int, mask_id: int, cls_id: int, sep_id: int, pad_id: int,
                 seq_len: int, num_predict: Optional[int] = None, strategy: str = "single_token",
                 word_starts: Optional[np.ndarray] = None, mask_token_rate: float = 0.8,
                 random_token_rate: float = 0.1, min_span_words: int = 1, max_span_words: int = 5,
                 truncate_stride: int = 1):
        if strategy not in MASKING_STRATEGIES:
            raise MaskingError(f"strategy must be one of {MASKING_STRATEGIES}, got {strategy!r}")
        if strategy == "word_span" and word_starts is None:
            raise MaskingError("word_span masking needs word_starts (see word_start_table / from_tokenizer)")
        if truncate_stride < 1 or truncate_stride >= seq_len:
            raise MaskingError(f"truncate_stride must be in [1, seq_len), got {truncate_stride}")
        if not 1 <= min_span_words <= max_span_words:
            raise MaskingError(f"need 1 <= min_span_words <= max_span_words, got {min_span_words}, {max_span_words}")
        self.vocab_size = int(vocab_size)
        self.mask_id, self.cls_id, self.sep_id, self.pad_id = map(int, (mask_id, cls_id, sep_id, pad_id))
        self.seq_len = int(seq_len)
        if num_predict is not None and not 0 <= int(num_predict) <= max(1, seq_len - 3):
            raise MaskingError(f"num_predict must be between 1 and {max(1, seq_len - 3)} (seq_len "
                               f"{seq_len} minus [CLS] and two [SEP]), got {num_predict}")
        self.num_predict = int(num_predict) if num_predict else num_predictions_for(seq_len)
        self.strategy = strategy
        self.truncate_stride = int(truncate_stride)
        self.min_span_words, self.max_span_words = int(min_span_words), int(max_span_words)
        self.mask_token_rate, self.random_token_rate = float(mask_token_rate), float(random_token_rate)
        self._word_starts = None if word_starts is None else tf.constant(np.asarray(word_starts, bool))
        self._span_logits = tf.constant(np.log(span_length_probs(min_span_words, max_span_words)), tf.float32)

    @classmethod
    def from_tokenizer(cls, tokenizer, seq_len: int, **kwargs) -> "MlmMasker":
        """Takes ids, vocab size and word starts from a ``WordpieceTokenizer``."""
        specials = [tokenizer.vocab[i] for i in (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id,
                                                 tokenizer.mask_id)]
        kwargs.setdefault("word_starts", word_start_table(tokenizer.vocab, specials))
        return cls(tokenizer.vocab_size, tokenizer.mask_id, tokenizer.cls_id, tokenizer.sep_id,
                   tokenizer.pad_id, seq_len, **kwargs)

    # ------------------------------------------------------------------------------ pieces
    def _selector(self, max_selections, seed) -> ReproducibleItemSelector:
        # selection_rate 1.0: take min(#candidates, max_selections) random candidates per row.
        return ReproducibleItemSelector(max_selections_per_batch=max_selections, selection_rate=1.0,
                                        unselectable_ids=[self.pad_id], seed=seed)

    def _chooser(self, seed) -> KeyedMaskValuesChooser:
        return KeyedMaskValuesChooser(self.vocab_size, self.mask_id, self.mask_token_rate,
                                      self.random_token_rate, seed=seed)

    def truncate_for_pooling(self, input_ids, attention_mask, token_type_ids):
        """Last ``stride`` positions -> [SEP] + pads (where the row was real there), as the original."""
        s = self.truncate_stride
        if s <= 1:
            return input_ids, attention_mask, token_type_ids
        keep = self.seq_len - s
        real = attention_mask[:, keep:keep + 1]  # [B, 1] was position L-s a real token?
        tail_pad = tf.zeros_like(input_ids[:, keep + 1:])
        ids = tf.concat([input_ids[:, :keep], tf.where(real > 0, self.sep_id, self.pad_id),
                         tail_pad + self.pad_id], axis=1)
        mask = tf.concat([attention_mask[:, :keep], real, tail_pad], axis=1)
        types = tf.concat([token_type_ids[:, :keep], token_type_ids[:, keep:keep + 1] * real, tail_pad], axis=1)
        return ids, mask, types

    def _word_span_targets(self, ids, candidates, attention_mask, seed=None):
        """bool [B, L]: the original's word-span sampler, batched (``seed``: int [2] key)."""
        keys = tf.random.experimental.stateless_split(random_key() if seed is None else seed, 3)
        L, P = self.seq_len, self.num_predict
        batch = tf.shape(ids)[0]
        pos = tf.range(L, dtype=tf.int32)
        word_start = tf.logical_and(tf.gather(self._word_starts, ids), candidates)  # [B, L]
        n_words = tf.reduce_sum(tf.cast(word_start, tf.int32), axis=1)  # [B]
        real_len = tf.reduce_sum(tf.cast(attention_mask, tf.int32), axis=1)  # [B]
        # Word start positions in order, then the end sentinel: boundary [B, L + 1].
        starts = tf.sort(tf.where(word_start, pos[None, :], L + pos[None, :]), axis=1)
        boundary = tf.where(pos[None, :] < n_words[:, None], starts, real_len[:, None])
        boundary = tf.concat([boundary, real_len[:, None]], axis=1)

        span_len = tf.random.stateless_categorical(
            tf.tile(self._span_logits[None], [batch, 1]), P, seed=keys[0],
            dtype=tf.int32) + self.min_span_words  # [B, P] in words
        span_f = tf.cast(span_len, tf.float32)
        chunk = (L + 1 - self.truncate_stride) / P / 1.2  # ~5 words per target region at 512/85
        left = tf.cast(tf.round(tf.random.stateless_uniform([batch, P], seed=keys[1]) * span_f
                                * (chunk - 1)), tf.int32)
        right = tf.cast(tf.round(span_f * chunk), tf.int32) - left
        beg_w = tf.cumsum(left, axis=1) + tf.cumsum(right, axis=1, exclusive=True)
        end_w = beg_w + span_len
        valid = end_w <= n_words[:, None]
        beg_t = tf.gather(boundary, tf.minimum(beg_w, L), batch_dims=1)  # [B, P] token positions
        end_t = tf.gather(boundary, tf.minimum(end_w, L), batch_dims=1)
        # Shuffle the spans (invalid ones last), then accept tokens while the running count <= P.
        order = tf.argsort(tf.where(valid, tf.random.stateless_uniform([batch, P], seed=keys[2]), 2.0),
                           axis=1)
        beg_t = tf.gather(beg_t, order, batch_dims=1)
        end_t = tf.gather(end_t, order, batch_dims=1)
        valid = tf.gather(valid, order, batch_dims=1)
        in_span = ((pos[None, None, :] >= beg_t[:, :, None]) & (pos[None, None, :] < end_t[:, :, None])
                   & valid[:, :, None] & candidates[:, None, :])  # [B, P, L]
        running = tf.reshape(tf.cumsum(tf.reshape(tf.cast(in_span, tf.int32), [batch, P * L]), axis=1),
                             [batch, P, L])
        return tf.reduce_any(in_span & (running <= P), axis=1)

    # ------------------------------------------------------------------------------- call
    def __call__(self, features: dict, seed=None) -> dict:
        """``seed``: int [2] stateless key (``batch_key``); the same batch and key give the same
        masks. None draws one from TF's global generator."""
        features = dict(features)
        keys = tf.random.experimental.stateless_split(random_key() if seed is None else seed, 3)
        ids = tf.cast(features.pop("input_ids"), tf.int32)
        unbatched = ids.shape.rank == 1
        if unbatched:
            ids = ids[None]
        if ids.shape[-1] is not None and ids.shape[-1] != self.seq_len:
            raise ValueError(f"input_ids have length {ids.shape[-1]}, masker built for seq_len={self.seq_len}")
        types = features.pop("token_type_ids", None)
        types = tf.zeros_like(ids) if types is None else tf.reshape(tf.cast(types, tf.int32), tf.shape(ids))
        attn = features.pop("attention_mask", None)
        attn = (tf.cast(tf.not_equal(ids, self.pad_id), tf.int32) if attn is None
                else tf.reshape(tf.cast(attn, tf.int32), tf.shape(ids)))
        ids, attn, types = self.truncate_for_pooling(ids, attn, types)

        special = (tf.equal(ids, self.cls_id) | tf.equal(ids, self.sep_id) | tf.equal(ids, self.pad_id))
        candidates = tf.logical_and(tf.equal(attn, 1), tf.logical_not(special))  # [B, L]
        P = self.num_predict

        if self.strategy == "single_token":
            # Non-candidates become pad (unselectable) so the selector sees only real tokens.
            selectable = tf.RaggedTensor.from_tensor(tf.where(candidates, ids, self.pad_id))
            masked, positions, targets = tf_text.mask_language_model(
                selectable, self._selector(P, keys[0]), self._chooser(keys[1]), axis=1)
            masked_ids_full = tf.where(candidates, masked.to_tensor(shape=[None, self.seq_len]), ids)
        else:
            is_target = self._word_span_targets(ids, candidates, attn, seed=keys[2])
            remaining = P - tf.reduce_sum(tf.cast(is_target, tf.int32), axis=1)  # [B] budget left
            rest = tf.RaggedTensor.from_tensor(
                tf.where(candidates & tf.logical_not(is_target), ids, self.pad_id))
            extra = self._selector(tf.cast(remaining, tf.float32), keys[0]).get_selection_mask(
                rest, axis=1)
            is_target = is_target | extra.to_tensor(default_value=False, shape=[None, self.seq_len])
            where = tf.where(is_target)  # [K, 2] row-major, so positions ascend within rows
            positions = tf.RaggedTensor.from_value_rowids(
                tf.cast(where[:, 1], tf.int32), where[:, 0], nrows=tf.cast(tf.shape(ids)[0], tf.int64))
            targets = positions.with_flat_values(tf.gather_nd(ids, where))
            values = self._chooser(keys[1]).get_mask_values(targets)
            masked_ids_full = tf.tensor_scatter_nd_update(ids, where, values.flat_values)

        batch = ids.shape[0]  # static when the dataset batches with drop_remainder=True
        shape = [batch, P]
        out = dict(features)
        out.update({
            "input_ids": tf.ensure_shape(masked_ids_full, [batch, self.seq_len]),
            "attention_mask": tf.ensure_shape(attn, [batch, self.seq_len]),
            "token_type_ids": tf.ensure_shape(types, [batch, self.seq_len]),
            "masked_positions": tf.ensure_shape(
                tf.cast(positions, tf.int32).to_tensor(default_value=0, shape=shape), shape),
            "masked_ids": tf.ensure_shape(tf.cast(targets, tf.int32).to_tensor(default_value=0, shape=shape), shape),
            "masked_weights": tf.ensure_shape(
                tf.ones_like(tf.cast(positions, tf.float32)).to_tensor(default_value=0.0, shape=shape), shape),
        })
        if unbatched:
            out = {k: (v[0] if k in _CONTRACT else v) for k, v in out.items()}
        return out


_CONTRACT = ("input_ids", "attention_mask", "token_type_ids", "masked_positions", "masked_ids",
             "masked_weights")

__all__ = ["MlmMasker", "ReproducibleItemSelector", "KeyedMaskValuesChooser", "batch_key",
           "num_predictions_for", "word_start_table", "span_length_probs", "MASKING_STRATEGIES"]
