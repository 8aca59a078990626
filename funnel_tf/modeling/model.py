"""FunnelBaseModel (embeddings + encoder) and FunnelModel (+ upsampling decoder): the backbones.

Both take a dict of int tensors `input_ids`, `attention_mask` (1 = attend; default all ones) and
`token_type_ids` (default zeros, CLS = 2) with a static sequence length, and return a dict.
Weights are created at construction, so a model can be loaded or saved before its first call.
"""

import sys
from typing import Optional

import keras
import numpy as np
from keras import ops

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


def _is_ragged(value) -> bool:
    tf = sys.modules.get("tensorflow")  # only TF has ragged tensors; never imported from here
    return tf is not None and isinstance(value, tf.RaggedTensor)


def _shape(value) -> Optional[tuple]:
    """The static shape as a tuple (None where a dimension is unknown), None for an unknown rank."""
    if getattr(value.shape, "rank", 0) is None:  # a TF graph tensor of unknown rank
        return None
    return tuple(None if d is None else int(d) for d in value.shape)


def shapes_compatible(a: Optional[tuple], b: Optional[tuple]) -> bool:
    """Shapes that can be the same (an unknown rank matches anything; else equal rank, and equal
    sizes where both are known)."""
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _shown(shape: Optional[tuple]):
    return list(shape) if shape is not None else "an unknown rank"


def _spec(value, name: str):
    """(value, shape, dtype name) of a tensor-like input without converting symbolic (Keras) tensors."""
    if _is_ragged(value):
        raise ModelInputTypeError(f"{name}: a ragged batch; pad every row to one length first "
                                  f"(FunnelTokenizer(..., sequence_length=L) does)")
    if isinstance(value, (str, bytes)) or not hasattr(value, "shape"):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError) as e:
            raise ModelInputTypeError(f"{name}: expected an int tensor [batch, seq_len] of token ids, got "
                                      f"{type(value).__name__} ({str(e).splitlines()[0][:120]})") from None
    try:
        kind = getattr(value.dtype, "kind", None)  # numpy: U / S are strings, O mixed objects
        dtype = "string" if kind in ("U", "S") else keras.backend.standardize_dtype(value.dtype)
        if kind == "O":
            raise TypeError
    except (TypeError, ValueError):
        raise ModelInputTypeError(f"{name}: expected ints, got an array of {value.dtype} "
                                  f"(mixed or missing values?)") from None
    return value, _shape(value), dtype


def _is_int(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


def _values(value) -> Optional[np.ndarray]:
    """The values of a concrete input, or None for a symbolic one (a Keras placeholder, a TF graph
    tensor, a jax.jit tracer): only eager calls can be checked value by value."""
    if isinstance(value, keras.KerasTensor):
        return None
    try:
        return np.asarray(value)
    except Exception:  # noqa: BLE001 - TF graph tensors and JAX tracers refuse, each in its own way
        return None


def _whole_floats(value, dtype: str) -> bool:
    """Float ids that are ids all the same: symbolic ones (Keras builds a subclassed model that
    wraps ours with float32 placeholders, and casts as its Embedding does) and eager ones whose
    values are all whole numbers; fractional values are refused."""
    if not _is_float(dtype):
        return False
    values = _values(value)
    if values is None:
        return True
    values = values.astype(np.float64)
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
    if dtype == "string":
        raise ModelInputTypeError("input_ids: got strings; the model takes token ids: tokenize first "
                                  "(FunnelTokenizer(vocab)(texts) gives input_ids, attention_mask, token_type_ids)")
    if not (_is_int(dtype) or _whole_floats(ids, dtype)):
        raise ModelInputTypeError(f"input_ids: expected integer token ids, got {dtype}")
    rank = len(shape) if shape is not None else None
    if rank != 2:
        hint = " (one sequence: input_ids[None] makes it a batch of one)" if rank == 1 else \
            " (FunnelForMultipleChoice takes [batch, num_choices, seq_len])" if rank == 3 else ""
        raise ModelInputError(f"input_ids: expected shape [batch, seq_len], got {_shown(shape)}{hint}")
    out = [ids]
    for name, kinds in (("attention_mask", "ints, bools or 0/1 floats"), ("token_type_ids", "ints")):
        value = inputs.get(name)
        if value is None:
            out.append(None)
            continue
        value, other, other_dtype = _spec(value, name)
        allowed = _is_int(other_dtype) or (name == "attention_mask" and
                                           (other_dtype == "bool" or _is_float(other_dtype))) \
            or _whole_floats(value, other_dtype)
        if not allowed:
            raise ModelInputTypeError(f"{name}: expected {kinds}, got {other_dtype}")
        if not shapes_compatible(other, shape):
            raise ModelInputError(f"{name}: shape {list(other)} does not match input_ids {list(shape)}; it "
                                  f"needs one value per token")
        out.append(value)
    values = _values(ids) if config is not None else None  # eager calls only: a traced step has none
    if values is not None:
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
    ids = ops.cast(ids, "int32")
    mask = ops.ones_like(ids) if mask is None else ops.cast(mask, "int32")
    types = ops.zeros_like(ids) if types is None else ops.cast(types, "int32")
    return ids, mask, types


@keras.saving.register_keras_serializable(package="funnel_tf")
class FunnelBaseModel(CheckedCall, PretrainedMixin, keras.Model):
    """Encoder only: [B, L] ids -> last_hidden_state [B, L_last, D] (L_last = L / 2^(blocks-1) roughly).

    The backbone of the sequence-level heads (classification, multiple choice): the sequence is
    pooled between blocks and not upsampled again. Weights exist from construction on.
    `embeddings` may be another model's FunnelEmbeddings layer to share the table and input LayerNorm
    (the ELECTRA generator does this).

    Args:
        config: the FunnelConfig.
        embeddings: a FunnelEmbeddings layer to share, or None for a new one.
        **kwargs: keras.Model arguments: name, and dtype (a policy such as
            "mixed_bfloat16" that every sublayer computes in; default the global policy).

    Call args:
        inputs: a dict of int tensors `input_ids` [batch, seq_len], `attention_mask` (1 = attend;
            default all ones) and `token_type_ids` (CLS 2, first segment 0, second 1; default
            zeros), or the ids alone; seq_len at least `config.min_seq_len()`.
        training: apply dropout.
        output_hidden_states: add `hidden_states`, every layer's output.

    Returns (when called):
        A dict with `last_hidden_state` [batch, L_last, d_model] (`config.pooled_lengths(L)[-1]`).

    Example:

    >>> import numpy as np
    >>> from funnel_tf import FunnelBaseModel, load_config
    >>> config = load_config("tiny").replace(vocab_size=100)  # 3 blocks, d_model 64
    >>> model = FunnelBaseModel(config)
    >>> ids = np.random.default_rng(0).integers(0, 100, (2, 16))
    >>> out = model({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    >>> tuple(out["last_hidden_state"].shape)  # pooled twice: 16 -> 8 -> 4
    (2, 4, 64)
    """

    has_decoder = False
    default_name = "funnel_base_model"  # Keras style: the class name in snake case

    def __init__(self, config: FunnelConfig, embeddings: Optional[FunnelEmbeddings] = None, **kwargs):
        kwargs.setdefault("name", self.default_name)
        super().__init__(**kwargs)
        # A policy given here is the model's own (save_pretrained keeps it); an inherited global
        # policy is the reader's to choose again when the checkpoint loads.
        self.dtype_given = kwargs.get("dtype") is not None
        self.config = config
        policy = self.dtype_policy  # keras-hub style: every sublayer computes in the model's policy
        self.embeddings = embeddings if embeddings is not None else FunnelEmbeddings(config, name="embeddings",
                                                                                     dtype=policy)
        self.encoder = FunnelEncoder(config, name="encoder", dtype=policy)
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
        ids = ops.zeros([batch_size, seq_len], "int32")
        return {"input_ids": ids, "attention_mask": ops.ones_like(ids), "token_type_ids": ops.zeros_like(ids)}

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
    """Encoder + decoder: [B, L] ids -> last_hidden_state [B, L, D] at full token resolution.

    The backbone of the token-level heads (MLM, ELECTRA, token classification, question
    answering): the decoder upsamples the last block's output and adds the first block's.

    Args:
        config: the FunnelConfig.
        embeddings: a FunnelEmbeddings layer to share, or None for a new one.
        **kwargs: keras.Model arguments: name, and dtype (a policy such as
            "mixed_bfloat16" that every sublayer computes in; default the global policy).

    Call args:
        inputs: a dict of int tensors `input_ids` [batch, seq_len], `attention_mask` (1 = attend;
            default all ones) and `token_type_ids` (CLS 2, first segment 0, second 1; default
            zeros), or the ids alone; seq_len at least `config.min_seq_len()`.
        training: apply dropout.
        output_hidden_states: add `hidden_states`, every layer's output.

    Returns (when called):
        A dict with `last_hidden_state` [batch, seq_len, d_model] and
        `encoder_last_hidden_state` [batch, L_last, d_model].

    Example:

    >>> import numpy as np
    >>> from funnel_tf import FunnelModel, load_config
    >>> model = FunnelModel(load_config("tiny").replace(vocab_size=100))
    >>> ids = np.random.default_rng(0).integers(0, 100, (2, 16))
    >>> out = model({"input_ids": ids, "token_type_ids": np.zeros_like(ids)})
    >>> tuple(out["last_hidden_state"].shape), tuple(out["encoder_last_hidden_state"].shape)
    ((2, 16, 64), (2, 4, 64))
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = model.save_pretrained(folder)  # config.json, model.weights.h5, funnel_tf.json
    >>> FunnelModel.from_pretrained(folder).config == model.config
    True
    """

    has_decoder = True
    default_name = "funnel_model"

    def _make_decoder(self):
        self.decoder = FunnelDecoder(self.config, name="decoder", dtype=self.dtype_policy)
