"""Relative positional encodings, computed once per forward pass and shared by every layer of a block.

All integer bookkeeping (token positions per block, relative distances) is done in numpy at trace
time from the static sequence length, so the graph only holds constant tables: nothing to gather,
nothing dynamic, XLA-friendly. The float tables are built in float32 exactly like HF
(`inv_freq = 1 / 10000 ** (k / (D/2))`, angle = pos * inv_freq, [sin | cos] concatenated).
"""

from typing import List, Optional, Tuple

import keras
import numpy as np
from keras import ops

from funnel_tf.modeling.dropout import Dropout


def block_positions(seq_len: int, num_blocks: int, separate_cls: bool, truncate_seq: bool) -> List[np.ndarray]:
    """Token positions (in original-token units) of each block's sequence: P_0 = 0..L-1, then strided.

    With separate_cls the pooled CLS sits at 1 - 2^b, so it is never at distance 0 of a real token.
    """
    pos = np.arange(seq_len, dtype=np.int64)
    out = [pos]
    for b in range(1, num_blocks):
        if separate_cls:
            tail = pos[1:-1] if truncate_seq else pos[1:]
            pos = np.concatenate([[1 - 2 ** b], tail[::2]])
        else:
            pos = pos[::2]
        out.append(pos)
    return out


def relative_distances(pos: np.ndarray, stride: int, pooled_pos: Optional[np.ndarray] = None,
                       shift: int = 1) -> np.ndarray:
    """Distances covered by the relative-shift table: length shift*len(pooled) + len(pos), descending."""
    if pooled_pos is None:
        pooled_pos = pos
    ref_point = pooled_pos[0] - pos[0]
    max_dist = ref_point + shift * len(pooled_pos) * stride
    min_dist = pooled_pos[0] - pos[-1]
    return np.arange(max_dist, min_dist - 1, -stride, dtype=np.int64)


def inverse_frequencies(d_model: int):
    """[d_model/2] float32 frequencies, computed in float32 like HF so angles match bit for bit."""
    half = d_model // 2
    freq_seq = ops.arange(0, half, 1.0, dtype="float32")
    return 1.0 / ops.power(ops.convert_to_tensor(10000.0, "float32"), freq_seq / float(half))


def sinusoid(distances: np.ndarray, d_model: int) -> Tuple:
    """sin and cos of distance * inv_freq, each [len(distances), d_model/2] float32 tensors."""
    angle = ops.expand_dims(ops.convert_to_tensor(distances.astype(np.float32)), 1) * \
        ops.expand_dims(inverse_frequencies(d_model), 0)
    return ops.sin(angle), ops.cos(angle)


class RelativePositionEncoding(keras.layers.Layer):
    """Builds the per-block positional tables for one attention structure (encoder or decoder).

    relative_shift: for block b, (no_pool_table [2*L_b, D], pool_table [2*L_b + L_{b-1}, D] or None);
    factorized: (phi, pi, psi, omega) each [L, D], pooled later alongside the sequence.
    Dropout (rate hidden_dropout) hits the sin and cos features in training, as in HF.
    """

    def __init__(self, d_model: int, num_blocks: int, attention_type: str, separate_cls: bool,
                 truncate_seq: bool, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.d_model = d_model
        self.num_blocks = num_blocks
        self.attention_type = attention_type
        self.separate_cls = separate_cls
        self.truncate_seq = truncate_seq
        self.rate = dropout
        self.sin_dropout = Dropout(dropout, name="sin_dropout", dtype=self.dtype_policy)
        self.cos_dropout = Dropout(dropout, name="cos_dropout", dtype=self.dtype_policy)

    def _table(self, distances, training):
        sin, cos = sinusoid(distances, self.d_model)
        return ops.concatenate([self.sin_dropout(sin, training=training),
                                self.cos_dropout(cos, training=training)], axis=-1)

    def tables(self, seq_len: int, training=False):
        """The tables for a static `seq_len` (a Python int; not `__call__`, which wants tensors)."""
        if self.attention_type == "factorized":
            sin, cos = sinusoid(np.arange(seq_len), self.d_model)
            sin_d = self.sin_dropout(sin, training=training)
            cos_d = self.cos_dropout(cos, training=training)
            phi = ops.concatenate([sin_d, sin_d], axis=-1)
            pi = ops.concatenate([cos_d, cos_d], axis=-1)
            psi = ops.concatenate([cos, sin], axis=-1)
            omega = ops.concatenate([-sin, cos], axis=-1)
            return (phi, pi, psi, omega)
        positions = block_positions(seq_len, self.num_blocks, self.separate_cls, self.truncate_seq)
        tables = []
        for b in range(self.num_blocks):
            pool_table = None
            if b > 0:
                pool_table = self._table(relative_distances(positions[b - 1], 2 ** (b - 1), positions[b], shift=2),
                                         training)
            no_pool_table = self._table(relative_distances(positions[b], 2 ** b), training)
            tables.append((no_pool_table, pool_table))
        return tables

    def get_config(self):
        config = super().get_config()
        config.update(d_model=self.d_model, num_blocks=self.num_blocks, attention_type=self.attention_type,
                      separate_cls=self.separate_cls, truncate_seq=self.truncate_seq, dropout=self.rate)
        return config
