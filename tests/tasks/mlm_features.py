"""Tiny pretraining batches for the MLM and ELECTRA task tests: a 2-block Funnel config and
masked-LM features with one padded slot and one padded row tail."""

import numpy as np
import tensorflow as tf

from funnel_tf.config import load_config

V, L, P = 64, 16, 4
MASK = 4


def tiny_config(**kw):
    return load_config("tiny").replace(vocab_size=V, block_sizes=[1, 1], block_repeats=[1, 1],
                                       num_decoder_layers=1, hidden_dropout=0.0,
                                       attention_dropout=0.0, **kw)


def features(n=4, seed=0):
    r = np.random.RandomState(seed)
    ids = r.randint(5, V, (n, L)).astype(np.int32)
    ids[:, 0] = 1
    mask = np.ones((n, L), np.int32)
    mask[1, -5:] = 0
    ids[mask == 0] = 0
    types = np.zeros((n, L), np.int32)
    types[:, 0] = 2
    pos = np.stack([np.sort(r.choice(np.arange(1, L - 5), P, replace=False)) for _ in range(n)])
    pos = pos.astype(np.int32)
    orig = np.take_along_axis(ids, pos, 1)
    masked = ids.copy()
    np.put_along_axis(masked, pos, MASK, 1)
    w = np.ones((n, P), np.float32)
    w[0, -1] = 0.0
    pos[0, -1] = 0  # padded slot, as the masker writes it
    orig[0, -1] = 0
    return {k: tf.constant(v) for k, v in dict(
        input_ids=masked, attention_mask=mask, token_type_ids=types, masked_positions=pos,
        masked_ids=orig, masked_weights=w).items()}
