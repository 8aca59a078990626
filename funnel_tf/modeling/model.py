"""FunnelBaseModel (embeddings + encoder) and FunnelModel (+ upsampling decoder): the backbones.

Both take a dict of int tensors `input_ids`, `attention_mask` (1 = attend; default all ones) and
`token_type_ids` (default zeros, CLS = 2) with a static sequence length, and return a dict.
Weights are created at construction, so a model can be loaded or saved before its first call.
"""

from typing import Optional

import keras
import tensorflow as tf

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.decoder import FunnelDecoder
from funnel_tf.modeling.embeddings import FunnelEmbeddings
from funnel_tf.modeling.encoder import FunnelEncoder
from funnel_tf.modeling.pretrained import PretrainedMixin


def standardize_inputs(inputs):
    """Fill HF's defaults: attention_mask = ones, token_type_ids = zeros; ids as int32."""
    if not isinstance(inputs, dict):
        inputs = {"input_ids": inputs}
    if "input_ids" not in inputs:
        raise ValueError(f"inputs need 'input_ids'; got keys {sorted(inputs)}")
    ids = tf.cast(inputs["input_ids"], tf.int32)
    mask = inputs.get("attention_mask")
    mask = tf.ones_like(ids) if mask is None else tf.cast(mask, tf.int32)
    types = inputs.get("token_type_ids")
    types = tf.zeros_like(ids) if types is None else tf.cast(types, tf.int32)
    return ids, mask, types


@keras.saving.register_keras_serializable(package="funnel_tf")
class FunnelBaseModel(PretrainedMixin, keras.Model):
    """Encoder only: [B, L] ids -> last_hidden_state [B, L_last, D] (L_last = L / 2^(blocks-1) roughly).

    `embeddings` may be another model's FunnelEmbeddings layer to share the table and input LayerNorm
    (the ELECTRA generator does this).
    """

    has_decoder = False

    def __init__(self, config: FunnelConfig, embeddings: Optional[FunnelEmbeddings] = None, **kwargs):
        kwargs.setdefault("name", "funnel")
        super().__init__(**kwargs)
        self.config = config
        self.embeddings = embeddings if embeddings is not None else FunnelEmbeddings(config, name="embeddings")
        self.encoder = FunnelEncoder(config, name="encoder")
        self._make_decoder()
        self.build()

    def _make_decoder(self):
        self.decoder = None

    def build(self, input_shape=None):
        if not self.embeddings.built:
            self.embeddings.build()
        self.encoder.build()
        if self.decoder is not None:
            self.decoder.build()

    def call(self, inputs, training=False, output_hidden_states=False):
        ids, mask, types = standardize_inputs(inputs)
        embeds = self.embeddings(ids, training=training)
        enc = self.encoder(embeds, mask, types, training=training, output_hidden_states=output_hidden_states)
        out = {"last_hidden_state": enc["last_hidden_state"]}
        if output_hidden_states:
            out["hidden_states"] = enc["hidden_states"]
        if self.decoder is not None:
            dec = self.decoder(enc["last_hidden_state"], enc["first_block_output"], mask, types, training=training,
                               output_hidden_states=output_hidden_states)
            out["encoder_last_hidden_state"] = enc["last_hidden_state"]
            out["last_hidden_state"] = dec["last_hidden_state"]
            if output_hidden_states:
                out["hidden_states"] = enc["hidden_states"] + dec["hidden_states"]
        return out

    def dummy_inputs(self, batch_size: int = 2, seq_len: Optional[int] = None):
        """Valid inputs for a trace or smoke test (length at least the config's minimum)."""
        seq_len = seq_len or max(8, self.config.min_seq_len())
        ids = tf.zeros([batch_size, seq_len], tf.int32)
        return {"input_ids": ids, "attention_mask": tf.ones_like(ids), "token_type_ids": tf.zeros_like(ids)}

    def get_config(self):
        config = super().get_config()  # name, trainable, dtype policy
        config["config"] = self.config.to_dict()
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(FunnelConfig.from_dict(config.pop("config")), **config)


@keras.saving.register_keras_serializable(package="funnel_tf")
class FunnelModel(FunnelBaseModel):
    """Encoder + decoder: [B, L] ids -> last_hidden_state [B, L, D] at full token resolution."""

    has_decoder = True

    def _make_decoder(self):
        self.decoder = FunnelDecoder(self.config, name="decoder")
