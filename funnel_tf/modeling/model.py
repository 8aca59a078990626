"""FunnelBaseModel (embeddings + encoder) and FunnelModel (+ upsampling decoder): the backbones.

Both take a dict of int tensors `input_ids`, `attention_mask` (1 = attend; default all ones) and
`token_type_ids` (default zeros, CLS = 2) with a static sequence length, and return a dict.
Weights are created at construction, so a model can be loaded or saved before its first call.
"""

from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from funnel_tf.config import FunnelConfig
from funnel_tf.errors import UserError
from funnel_tf.modeling.decoder import FunnelDecoder
from funnel_tf.modeling.embeddings import FunnelEmbeddings
from funnel_tf.modeling.encoder import FunnelEncoder
from funnel_tf.modeling.pretrained import PretrainedMixin


class ModelInputError(UserError, ValueError):
    """Inputs a model cannot read (rank, shape, length, id range); names the input and what it needs."""


class ModelInputTypeError(ModelInputError, TypeError):
    """An input of the wrong type (floats or strings where token ids go, a ragged batch)."""


def _spec(value, name: str):
    """(value, shape, dtype) of a tensor-like input without converting symbolic (Keras) tensors."""
    if isinstance(value, tf.RaggedTensor):
        raise ModelInputTypeError(f"{name}: a ragged batch; pad every row to one length first "
                                  f"(FunnelTokenizer(..., sequence_length=L) does)")
    if isinstance(value, (str, bytes)) or not hasattr(value, "shape"):
        try:
            value = tf.convert_to_tensor(value)
        except (TypeError, ValueError) as e:
            raise ModelInputTypeError(f"{name}: expected an int tensor [batch, seq_len] of token ids, got "
                                      f"{type(value).__name__} ({str(e).splitlines()[0][:120]})") from None
    try:
        dtype = tf.as_dtype(value.dtype)
    except TypeError:
        raise ModelInputTypeError(f"{name}: expected ints, got an array of {value.dtype} "
                                  f"(mixed or missing values?)") from None
    return value, tf.TensorShape(value.shape), dtype


def _whole_floats(value, dtype) -> bool:
    """Float ids that are ids all the same: symbolic ones (Keras builds a subclassed model that
    wraps ours with float32 placeholders, and casts as its Embedding does) and eager ones whose
    values are all whole numbers; fractional values are refused."""
    if not dtype.is_floating:
        return False
    if isinstance(value, keras.KerasTensor) or not tf.executing_eagerly():
        return True
    values = np.asarray(value)
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def check_inputs(inputs, config: Optional[FunnelConfig] = None):
    """The (ids, mask, types) of `inputs` (a dict or the ids alone), checked before any graph op so
    that a wrong input is one ModelInputError naming it: ids and token types must be ints of rank
    2 [batch, seq_len], the mask (ints, bools or 0./1. floats) of the same shape, ids inside the
    config's vocab (eager calls). Returns them unconverted."""
    if not isinstance(inputs, dict):
        inputs = {"input_ids": inputs}
    if "input_ids" not in inputs:
        raise ModelInputError(f"inputs need 'input_ids' (int [batch, seq_len]); got keys {sorted(inputs)}")
    ids, shape, dtype = _spec(inputs["input_ids"], "input_ids")
    if dtype == tf.string:
        raise ModelInputTypeError("input_ids: got strings; the model takes token ids: tokenize first "
                                  "(FunnelTokenizer(vocab)(texts) gives input_ids, attention_mask, token_type_ids)")
    if not (dtype.is_integer or _whole_floats(ids, dtype)):
        raise ModelInputTypeError(f"input_ids: expected integer token ids, got {dtype.name}")
    if shape.rank != 2:
        hint = " (one sequence: input_ids[None] makes it a batch of one)" if shape.rank == 1 else \
            " (FunnelForMultipleChoice takes [batch, num_choices, seq_len])" if shape.rank == 3 else ""
        got = shape.as_list() if shape.rank is not None else "an unknown rank"
        raise ModelInputError(f"input_ids: expected shape [batch, seq_len], got {got}{hint}")
    out = [ids]
    for name, kinds in (("attention_mask", "ints, bools or 0/1 floats"), ("token_type_ids", "ints")):
        value = inputs.get(name)
        if value is None:
            out.append(None)
            continue
        value, other, other_dtype = _spec(value, name)
        allowed = other_dtype.is_integer or (name == "attention_mask" and
                                             (other_dtype.is_bool or other_dtype.is_floating)) \
            or _whole_floats(value, other_dtype)
        if not allowed:
            raise ModelInputTypeError(f"{name}: expected {kinds}, got {other_dtype.name}")
        if not other.is_compatible_with(shape):
            got = other.as_list() if other.rank is not None else "of unknown rank"
            raise ModelInputError(f"{name}: shape {got} does not match input_ids {shape.as_list()}; it "
                                  f"needs one value per token")
        out.append(value)
    if config is not None and tf.executing_eagerly() and not isinstance(ids, keras.KerasTensor):
        values = np.asarray(ids)  # eager calls only: a traced step has no values to look at
        if values.size and (values.min() < 0 or values.max() >= config.vocab_size):
            bad = values.min() if values.min() < 0 else values.max()
            raise ModelInputError(f"input_ids: token id {bad} is outside the vocab [0, {config.vocab_size}); "
                                  f"was it tokenized with another vocab?")
    return tuple(out)


def _lists_to_tensors(inputs):
    """Python lists (Keras refuses them as call arguments) become tensors, or ModelInputTypeError."""
    if isinstance(inputs, dict):
        return {k: _spec(v, k)[0] if isinstance(v, (list, tuple)) else v for k, v in inputs.items()}
    return _spec(inputs, "input_ids")[0] if isinstance(inputs, (list, tuple)) else inputs


class CheckedCall:
    """Mixin (before keras.Model): nested Python lists of ids are accepted like arrays, and what
    cannot be a tensor is a ModelInputTypeError naming the input, not a Keras argument error."""

    def __call__(self, *args, **kwargs):
        if args:
            args = (_lists_to_tensors(args[0]),) + args[1:]
        elif "inputs" in kwargs:
            kwargs["inputs"] = _lists_to_tensors(kwargs["inputs"])
        return super().__call__(*args, **kwargs)


def standardize_inputs(inputs, config: Optional[FunnelConfig] = None):
    """Check `inputs` (see check_inputs) and fill HF's defaults: attention_mask = ones,
    token_type_ids = zeros; all int32 [batch, seq_len]."""
    ids, mask, types = check_inputs(inputs, config)
    ids = tf.cast(ids, tf.int32)
    mask = tf.ones_like(ids) if mask is None else tf.cast(mask, tf.int32)
    types = tf.zeros_like(ids) if types is None else tf.cast(types, tf.int32)
    return ids, mask, types


@keras.saving.register_keras_serializable(package="funnel_tf")
class FunnelBaseModel(CheckedCall, PretrainedMixin, keras.Model):
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
        ids, mask, types = standardize_inputs(inputs, self.config)
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
