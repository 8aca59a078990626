"""The upsampling decoder: repeat the last block's states back to full length, add the block-0 output,
then run full-length layers that reuse block-0 style attention structures."""

import keras

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.attention_inputs import init_attention_inputs
from funnel_tf.modeling.encoder import make_position_encoding
from funnel_tf.modeling.layer import FunnelLayer
from funnel_tf.modeling.pooling import upsample
from funnel_tf.modeling.serialization import FunnelConfigSerializable


class FunnelDecoder(FunnelConfigSerializable, keras.layers.Layer):
    """(final [B, L_last, D], first_block [B, L, D]) -> [B, L, D].

    Decoder layers are named layer_{n_encoder_layers + j}, continuing the encoder's numbering.
    """

    def __init__(self, config: FunnelConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.position_encoding = make_position_encoding(config, 1, "position_encoding", dtype=self.dtype_policy)
        offset = config.num_hidden_layers
        self.layers_list = [FunnelLayer(config, 0, name=f"layer_{offset + j}", dtype=self.dtype_policy)
                            for j in range(config.num_decoder_layers)]
        # Also as plain attributes: Keras' tracked lists are invisible to tf.train.Checkpoint.
        for layer in self.layers_list:
            setattr(self, layer.name, layer)

    def build(self, input_shape=None):
        for layer in self.layers_list:
            layer.build()

    def call(self, final_hidden, first_block_hidden, attention_mask, token_type_ids, training=False,
             output_hidden_states=False):
        cfg = self.config
        seq_len = first_block_hidden.shape[1]
        up = upsample(final_hidden, cfg.upsample_stride, seq_len, cfg.separate_cls, cfg.truncate_seq)
        hidden = up + first_block_hidden
        all_hidden = [hidden]
        inputs = init_attention_inputs(self.position_encoding, seq_len, attention_mask, token_type_ids, cfg,
                                       training=training)
        for layer in self.layers_list:
            for _ in range(cfg.decoder_repeats):
                hidden = layer(hidden, hidden, hidden, inputs, training=training)
                all_hidden.append(hidden)
        out = {"last_hidden_state": hidden}
        if output_hidden_states:
            out["hidden_states"] = tuple(all_hidden)
        return out
