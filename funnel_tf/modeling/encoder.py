"""The funnel encoder: blocks of layers with strided pooling of the query before each block after the first."""

from typing import List

import keras

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.attention_inputs import (init_attention_inputs, post_attention_pooling,
                                                 pre_attention_pooling)
from funnel_tf.modeling.initializers import dense_initializer
from funnel_tf.modeling.layer import FunnelLayer
from funnel_tf.modeling.position import RelativePositionEncoding
from funnel_tf.modeling.serialization import FunnelConfigSerializable


def make_position_encoding(config: FunnelConfig, num_blocks: int, name: str, dtype=None):
    return RelativePositionEncoding(config.d_model, num_blocks, config.attention_type, config.separate_cls,
                                    config.truncate_seq, dropout=config.hidden_dropout, name=name, dtype=dtype)


class FunnelEncoder(FunnelConfigSerializable, keras.layers.Layer):
    """[B, L, E] embeddings -> [B, L_last, D]; also every layer output and the last block-0 output.

    Parameter layers are named layer_0 .. layer_{n-1} in block order (the original's numbering);
    a layer of a block with repeats R runs R times in a row with shared weights.
    """

    def __init__(self, config: FunnelConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.input_projection = None
        if config.d_embed is not None and config.d_embed != config.d_model:
            self.input_projection = keras.layers.Dense(
                config.d_model, kernel_initializer=dense_initializer(config, config.d_embed, config.d_model),
                name="input_projection", dtype=self.dtype_policy)
        self.position_encoding = make_position_encoding(config, config.num_blocks, "position_encoding",
                                                        dtype=self.dtype_policy)
        # A flat list grouped into blocks by the `blocks` property.
        self.layers_list: List[FunnelLayer] = []
        for b, size in enumerate(config.block_sizes):
            for _ in range(size):
                self.layers_list.append(FunnelLayer(config, b, name=f"layer_{len(self.layers_list)}",
                                                    dtype=self.dtype_policy))
        # Also as plain attributes: Keras' tracked lists are invisible to tf.train.Checkpoint.
        for layer in self.layers_list:
            setattr(self, layer.name, layer)

    @property
    def blocks(self) -> List[List[FunnelLayer]]:
        out, start = [], 0
        for size in self.config.block_sizes:
            out.append(self.layers_list[start:start + size])
            start += size
        return out

    @property
    def layers_flat(self) -> List[FunnelLayer]:
        return list(self.layers_list)

    def build(self, input_shape=None):
        if self.input_projection is not None:
            self.input_projection.build((None, None, self.config.d_embed))
        for layer in self.layers_flat:
            layer.build()

    def call(self, embeds, attention_mask, token_type_ids, training=False, output_hidden_states=False):
        """Returns dict: last_hidden_state [B, L_last, D], first_block_output [B, L, D], hidden_states."""
        cfg = self.config
        seq_len = embeds.shape[1]
        if seq_len is None:
            raise ValueError("funnel_tf needs a static sequence length; pad inputs to a fixed length")
        cfg.check_seq_len(seq_len)
        hidden = self.input_projection(embeds) if self.input_projection is not None else embeds
        inputs = init_attention_inputs(self.position_encoding, seq_len, attention_mask, token_type_ids, cfg,
                                       training=training)
        all_hidden = [hidden]
        first_block_output = None
        for b, block in enumerate(self.blocks):
            pooling = b > 0  # check_seq_len guarantees every later block can pool
            if pooling:
                pooled, inputs = pre_attention_pooling(hidden, inputs, cfg)
            for i, layer in enumerate(block):
                for r in range(cfg.block_repeats[b]):
                    if pooling and i == 0 and r == 0:
                        kv = hidden if cfg.pool_q_only else pooled
                        hidden = layer(pooled, kv, kv, inputs, training=training)
                        inputs = post_attention_pooling(inputs, cfg)
                    else:
                        hidden = layer(hidden, hidden, hidden, inputs, training=training)
                    all_hidden.append(hidden)
            if b == 0:
                first_block_output = hidden
        out = {"last_hidden_state": hidden, "first_block_output": first_block_output}
        if output_hidden_states:
            out["hidden_states"] = tuple(all_hidden)
        return out
