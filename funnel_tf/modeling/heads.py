"""Task heads on the Funnel backbones, matching HuggingFace's head classes weight for weight.

Token-level heads (MLM, ELECTRA, token classification, span extraction) sit on FunnelModel (full
length, decoder); sequence-level heads (classification/regression, multiple choice) read the CLS
state of FunnelBaseModel (encoder only, as in the paper). Logits are always float32.
"""

from typing import Optional

import keras
import numpy as np
from keras import ops

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling import kernels
from funnel_tf.modeling.activations import get_activation
from funnel_tf.modeling.dropout import Dropout
from funnel_tf.modeling.embeddings import FunnelEmbeddings
from funnel_tf.modeling.initializers import dense_initializer
from funnel_tf.modeling.model import CheckedCall, FunnelBaseModel, FunnelModel, ModelInputError, shapes_compatible
from funnel_tf.modeling.pretrained import PretrainedMixin
from funnel_tf.modeling.serialization import FunnelConfigSerializable


def _dense(config, units, fan_in, name, dtype):
    """A Dense layer with the config's initializer, computing in `dtype` (the owner's policy)."""
    return keras.layers.Dense(units, kernel_initializer=dense_initializer(config, fan_in, units), name=name,
                              dtype=dtype)


def _shape_of(value) -> tuple:
    """The static shape of a tensor, array or nested list (None where unknown)."""
    return tuple(value.shape if hasattr(value, "shape") else np.shape(value))


def _serializable(cls):
    """Registers a class with Keras under "funnel_tf>ClassName" (`keras.saving.load_model` finds it)."""
    return keras.saving.register_keras_serializable(package="funnel_tf")(cls)


class _Head(CheckedCall, PretrainedMixin, FunnelConfigSerializable, keras.Model):
    """Common plumbing: config serialisation, from/save_pretrained and the backbone attribute `funnel`."""

    backbone_cls = FunnelModel
    is_task_model = True

    def __init__(self, config: FunnelConfig, embeddings: Optional[FunnelEmbeddings] = None, **kwargs):
        super().__init__(**kwargs)
        self.dtype_given = kwargs.get("dtype") is not None  # see FunnelBaseModel
        self.config = config
        self.funnel = self.backbone_cls(config, embeddings=embeddings, name="funnel", dtype=self.dtype_policy)
        self.funnel.dtype_given = self.dtype_given  # the backbone's policy is as much its own as ours

    def dummy_inputs(self, batch_size=2, seq_len=None):
        return self.funnel.dummy_inputs(batch_size, seq_len)

    def _extra_config(self):
        return {}

    def get_config(self):
        config = super().get_config()  # name, trainable, dtype policy, config
        config.update(self._extra_config())
        return config


@_serializable
class FunnelForMaskedLM(_Head):
    """logits = transform(h) E^T + b with E the (tied) input embedding table.

    With config.mlm_transform (the original release and the ELECTRA generator), h first goes through
    dense(d_model -> d_embed) -> gelu -> LayerNorm; HF projects h directly. Call with
    `masked_positions` (int [batch, P]) to score only those positions.

    Args:
        config: the FunnelConfig.
        embeddings: a FunnelEmbeddings layer to share (the ELECTRA generator), or None.
        **kwargs: keras.Model arguments: name, and dtype (a policy such as
            "mixed_bfloat16" that every sublayer computes in; default the global policy).

    Call args:
        inputs: a dict of int tensors `input_ids` [batch, seq_len], `attention_mask` (1 = attend;
            default all ones) and `token_type_ids` (CLS 2, first segment 0, second 1; default
            zeros), or the ids alone; seq_len at least `config.min_seq_len()`.
        training: apply dropout.
        output_hidden_states: add `hidden_states`, every layer's output.

    Returns (when called):
        The backbone's dict plus `logits`, float32 [batch, seq_len (or P), vocab_size].

    Example:

    >>> import numpy as np
    >>> from funnel_tf import FunnelForMaskedLM, load_config
    >>> config = load_config("tiny").replace(vocab_size=100, block_sizes=[1, 1], block_repeats=[1, 1])
    >>> ids = np.random.default_rng(0).integers(0, 100, (2, 8))
    >>> model = FunnelForMaskedLM(config)
    >>> tuple(model({"input_ids": ids})["logits"].shape)
    (2, 8, 100)
    >>> tuple(model({"input_ids": ids}, masked_positions=[[1, 3], [2, 5]])["logits"].shape)
    (2, 2, 100)
    """

    def __init__(self, config: FunnelConfig, embeddings: Optional[FunnelEmbeddings] = None, **kwargs):
        kwargs.setdefault("name", "funnel_for_masked_lm")
        super().__init__(config, embeddings=embeddings, **kwargs)
        self.transform = None
        if config.mlm_transform:
            e = config.embedding_size
            self.transform = _dense(config, e, config.d_model, "lm_proj", self.dtype_policy)
            self.transform_norm = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps,
                                                                  name="lm_proj_norm", dtype=self.dtype_policy)
            self.transform_act = get_activation(config.hidden_act)
        self.build()

    def build(self, input_shape=None):
        if self.transform is not None:
            self.transform.build((None, None, self.config.d_model))
            self.transform_norm.build((None, None, self.config.embedding_size))
        # autocast=False: the bias is added to float32 logits, so it stays float32 under mixed precision
        self.lm_bias = self.add_weight(name="lm_bias", shape=(self.config.vocab_size,), initializer="zeros",
                                       autocast=False)

    def call(self, inputs, masked_positions=None, training=False, output_hidden_states=False):
        out = self.funnel(inputs, training=training, output_hidden_states=output_hidden_states)
        h = out["last_hidden_state"]  # [B, L, D]
        if masked_positions is not None:
            h = kernels.gather_positions(h, masked_positions)  # [B, P, D]
        if self.transform is not None:
            h = self.transform_norm(self.transform_act(self.transform(h)))
        table = kernels.compute_weight(self.funnel.embeddings.word_embeddings, h.dtype)  # [V, E]
        # One 2-D MatMul: on TF, Keras' einsum became a broadcast BatchMatMul whose table gradient
        # is a [B, V, E] tensor summed over the batch.
        lead = list(ops.shape(h)[:-1])  # B, P
        logits = ops.reshape(kernels.matmul_nt(ops.reshape(h, [-1, h.shape[-1]]), table), lead + [table.shape[0]])
        out["logits"] = ops.cast(logits, "float32") + self.lm_bias
        return out


@_serializable
class FunnelForPreTraining(_Head):
    """ELECTRA discriminator: logits [B, L], positive = token was replaced (HF's label convention).

    Args:
        config: the FunnelConfig.
        embeddings: a FunnelEmbeddings layer to share (the generator's), or None.
        **kwargs: keras.Model arguments: name, and dtype (a policy such as
            "mixed_bfloat16" that every sublayer computes in; default the global policy).

    Call args:
        inputs: a dict of int tensors `input_ids` [batch, seq_len], `attention_mask` (1 = attend;
            default all ones) and `token_type_ids` (CLS 2, first segment 0, second 1; default
            zeros), or the ids alone; seq_len at least `config.min_seq_len()`.
        training: apply dropout.
        output_hidden_states: add `hidden_states`, every layer's output.

    Returns (when called):
        The backbone's dict plus `logits`, float32 [batch, seq_len].

    Example:

    >>> import numpy as np
    >>> from funnel_tf import FunnelForPreTraining, load_config
    >>> config = load_config("tiny").replace(vocab_size=100, block_sizes=[1, 1], block_repeats=[1, 1])
    >>> ids = np.random.default_rng(0).integers(0, 100, (2, 8))
    >>> model = FunnelForPreTraining(config)
    >>> tuple(model({"input_ids": ids})["logits"].shape)
    (2, 8)
    """

    def __init__(self, config: FunnelConfig, embeddings: Optional[FunnelEmbeddings] = None, **kwargs):
        kwargs.setdefault("name", "funnel_for_pre_training")
        super().__init__(config, embeddings=embeddings, **kwargs)
        d = config.d_model
        self.dense = _dense(config, d, d, "discriminator_dense", self.dtype_policy)
        self.dense_prediction = _dense(config, 1, d, "discriminator_prediction", self.dtype_policy)
        self.activation = get_activation(config.hidden_act)
        self.build()

    def build(self, input_shape=None):
        self.dense.build((None, None, self.config.d_model))
        self.dense_prediction.build((None, None, self.config.d_model))

    def call(self, inputs, training=False, output_hidden_states=False):
        out = self.funnel(inputs, training=training, output_hidden_states=output_hidden_states)
        h = self.activation(self.dense(out["last_hidden_state"]))
        out["logits"] = ops.cast(self.dense_prediction(h)[..., 0], "float32")
        return out


@_serializable
class FunnelClassificationHead(FunnelConfigSerializable, keras.layers.Layer):
    """tanh(W h_cls + b) -> dropout -> linear to num_labels (HF's FunnelClassificationHead)."""

    config_args = ("num_labels",)

    def __init__(self, config: FunnelConfig, num_labels: int, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.num_labels = num_labels
        d = config.d_model
        self.linear_hidden = _dense(config, d, d, "linear_hidden", self.dtype_policy)
        self.dropout = Dropout(config.hidden_dropout, dtype=self.dtype_policy)
        self.linear_out = _dense(config, num_labels, d, "linear_out", self.dtype_policy)

    def build(self, input_shape=None):
        self.linear_hidden.build((None, self.config.d_model))
        self.linear_out.build((None, self.config.d_model))

    def call(self, hidden, training=False):
        h = ops.tanh(self.linear_hidden(hidden))
        return self.linear_out(self.dropout(h, training=training))


@_serializable
class FunnelForSequenceClassification(_Head):
    """Classification (num_labels > 1) or regression (num_labels == 1) from the encoder's CLS state.

    Built on FunnelBaseModel (no decoder), as in the paper.

    Args:
        config: the FunnelConfig.
        num_labels: classes, or 1 for a regression score.
        **kwargs: keras.Model arguments: name, and dtype (a policy such as
            "mixed_bfloat16" that every sublayer computes in; default the global policy).

    Call args:
        inputs: a dict of int tensors `input_ids` [batch, seq_len], `attention_mask` (1 = attend;
            default all ones) and `token_type_ids` (CLS 2, first segment 0, second 1; default
            zeros), or the ids alone; seq_len at least `config.min_seq_len()`.
        training: apply dropout.
        output_hidden_states: add `hidden_states`, every layer's output.

    Returns (when called):
        The backbone's dict plus `logits`, float32 [batch, num_labels].

    Example:

    >>> import numpy as np
    >>> from funnel_tf import FunnelForSequenceClassification, load_config
    >>> config = load_config("tiny").replace(vocab_size=100, block_sizes=[1, 1], block_repeats=[1, 1])
    >>> ids = np.random.default_rng(0).integers(0, 100, (2, 8))
    >>> model = FunnelForSequenceClassification(config, num_labels=3)
    >>> tuple(model({"input_ids": ids})["logits"].shape)
    (2, 3)
    """

    backbone_cls = FunnelBaseModel

    def __init__(self, config: FunnelConfig, num_labels: int = 2, **kwargs):
        kwargs.setdefault("name", "funnel_for_sequence_classification")
        super().__init__(config, **kwargs)
        self.num_labels = num_labels
        self.classifier = FunnelClassificationHead(config, num_labels, name="classifier", dtype=self.dtype_policy)
        self.build()

    def build(self, input_shape=None):
        self.classifier.build()

    def _extra_config(self):
        return {"num_labels": self.num_labels}

    def call(self, inputs, training=False, output_hidden_states=False):
        out = self.funnel(inputs, training=training, output_hidden_states=output_hidden_states)
        logits = self.classifier(out["last_hidden_state"][:, 0], training=training)
        out["logits"] = ops.cast(logits, "float32")  # [B, num_labels]
        return out


@_serializable
class FunnelForMultipleChoice(_Head):
    """Inputs [B, C, L] -> one score per choice from each choice's CLS state -> logits [B, C].

    Args:
        config: the FunnelConfig.
        **kwargs: keras.Model arguments: name, and dtype (a policy such as
            "mixed_bfloat16" that every sublayer computes in; default the global policy).

    Call args:
        inputs: a dict of int tensors `input_ids` [batch, seq_len], `attention_mask` (1 = attend;
            default all ones) and `token_type_ids` (CLS 2, first segment 0, second 1; default
            zeros), or the ids alone; seq_len at least `config.min_seq_len()`.
        training: apply dropout.
        output_hidden_states: add `hidden_states`, every layer's output.

    Returns (when called):
        The backbone's dict (over batch * choices rows) plus `logits`, float32 [batch, choices].

    Example:

    >>> import numpy as np
    >>> from funnel_tf import FunnelForMultipleChoice, load_config
    >>> config = load_config("tiny").replace(vocab_size=100, block_sizes=[1, 1], block_repeats=[1, 1])
    >>> ids = np.random.default_rng(0).integers(0, 100, (2, 8))
    >>> model = FunnelForMultipleChoice(config)
    >>> choices = ids.reshape(1, 2, 8)  # one question, two choices
    >>> tuple(model({"input_ids": choices})["logits"].shape)
    (1, 2)
    """

    backbone_cls = FunnelBaseModel

    def __init__(self, config: FunnelConfig, **kwargs):
        kwargs.setdefault("name", "funnel_for_multiple_choice")
        super().__init__(config, **kwargs)
        self.classifier = FunnelClassificationHead(config, 1, name="classifier", dtype=self.dtype_policy)
        self.build()

    def build(self, input_shape=None):
        self.classifier.build()

    def call(self, inputs, training=False, output_hidden_states=False):
        if not isinstance(inputs, dict) or "input_ids" not in inputs:
            raise ModelInputError("FunnelForMultipleChoice takes a dict with 'input_ids' "
                                  "[batch, num_choices, seq_len] (and attention_mask, token_type_ids)")
        ids = inputs["input_ids"]
        shape = _shape_of(ids)
        if len(shape) != 3 or shape[1] is None or shape[2] is None:
            raise ModelInputError(f"input_ids: FunnelForMultipleChoice takes [batch, num_choices, seq_len] with "
                                  f"a static num_choices and seq_len, got {shape}")
        for name in ("attention_mask", "token_type_ids"):
            if inputs.get(name) is not None and not shapes_compatible(_shape_of(inputs[name]), shape):
                raise ModelInputError(f"{name}: shape {_shape_of(inputs[name])} does not match input_ids "
                                      f"{shape}")
        num_choices, seq_len = shape[1], shape[2]
        flat = {k: ops.reshape(v, [-1, seq_len]) for k, v in inputs.items()
                if k in ("input_ids", "attention_mask", "token_type_ids")}
        out = self.funnel(flat, training=training, output_hidden_states=output_hidden_states)
        scores = self.classifier(out["last_hidden_state"][:, 0], training=training)  # [B*C, 1]
        out["logits"] = ops.cast(ops.reshape(scores, [-1, num_choices]), "float32")
        return out

    def dummy_inputs(self, batch_size=2, seq_len=None, num_choices=4):
        single = self.funnel.dummy_inputs(batch_size * num_choices, seq_len)
        return {k: ops.reshape(v, [batch_size, num_choices, -1]) for k, v in single.items()}


@_serializable
class FunnelForTokenClassification(_Head):
    """Per-token logits [B, L, num_labels] from the decoder output.

    Args:
        config: the FunnelConfig.
        num_labels: labels per token.
        **kwargs: keras.Model arguments: name, and dtype (a policy such as
            "mixed_bfloat16" that every sublayer computes in; default the global policy).

    Call args:
        inputs: a dict of int tensors `input_ids` [batch, seq_len], `attention_mask` (1 = attend;
            default all ones) and `token_type_ids` (CLS 2, first segment 0, second 1; default
            zeros), or the ids alone; seq_len at least `config.min_seq_len()`.
        training: apply dropout.
        output_hidden_states: add `hidden_states`, every layer's output.

    Returns (when called):
        The backbone's dict plus `logits`, float32 [batch, seq_len, num_labels].

    Example:

    >>> import numpy as np
    >>> from funnel_tf import FunnelForTokenClassification, load_config
    >>> config = load_config("tiny").replace(vocab_size=100, block_sizes=[1, 1], block_repeats=[1, 1])
    >>> ids = np.random.default_rng(0).integers(0, 100, (2, 8))
    >>> model = FunnelForTokenClassification(config, num_labels=5)
    >>> tuple(model({"input_ids": ids})["logits"].shape)
    (2, 8, 5)
    """

    def __init__(self, config: FunnelConfig, num_labels: int = 2, **kwargs):
        kwargs.setdefault("name", "funnel_for_token_classification")
        super().__init__(config, **kwargs)
        self.num_labels = num_labels
        self.dropout = Dropout(config.hidden_dropout, dtype=self.dtype_policy)
        self.classifier = _dense(config, num_labels, config.d_model, "classifier", self.dtype_policy)
        self.build()

    def build(self, input_shape=None):
        self.classifier.build((None, None, self.config.d_model))

    def _extra_config(self):
        return {"num_labels": self.num_labels}

    def call(self, inputs, training=False, output_hidden_states=False):
        out = self.funnel(inputs, training=training, output_hidden_states=output_hidden_states)
        h = self.dropout(out["last_hidden_state"], training=training)
        out["logits"] = ops.cast(self.classifier(h), "float32")
        return out


@_serializable
class FunnelForQuestionAnswering(_Head):
    """SQuAD v1.1-style span extraction: start_logits, end_logits [B, L] from the decoder output.

    Args:
        config: the FunnelConfig.
        **kwargs: keras.Model arguments: name, and dtype (a policy such as
            "mixed_bfloat16" that every sublayer computes in; default the global policy).

    Call args:
        inputs: a dict of int tensors `input_ids` [batch, seq_len], `attention_mask` (1 = attend;
            default all ones) and `token_type_ids` (CLS 2, first segment 0, second 1; default
            zeros), or the ids alone; seq_len at least `config.min_seq_len()`.
        training: apply dropout.
        output_hidden_states: add `hidden_states`, every layer's output.

    Returns (when called):
        The backbone's dict plus `start_logits` and `end_logits`, float32 [batch, seq_len].

    Example:

    >>> import numpy as np
    >>> from funnel_tf import FunnelForQuestionAnswering, load_config
    >>> config = load_config("tiny").replace(vocab_size=100, block_sizes=[1, 1], block_repeats=[1, 1])
    >>> ids = np.random.default_rng(0).integers(0, 100, (2, 8))
    >>> model = FunnelForQuestionAnswering(config)
    >>> out = model({"input_ids": ids})
    >>> tuple(out["start_logits"].shape), tuple(out["end_logits"].shape)
    ((2, 8), (2, 8))
    """

    def __init__(self, config: FunnelConfig, **kwargs):
        kwargs.setdefault("name", "funnel_for_question_answering")
        super().__init__(config, **kwargs)
        self.qa_outputs = _dense(config, 2, config.d_model, "qa_outputs", self.dtype_policy)
        self.build()

    def build(self, input_shape=None):
        self.qa_outputs.build((None, None, self.config.d_model))

    def call(self, inputs, training=False, output_hidden_states=False):
        out = self.funnel(inputs, training=training, output_hidden_states=output_hidden_states)
        logits = ops.cast(self.qa_outputs(out["last_hidden_state"]), "float32")
        out["start_logits"], out["end_logits"] = logits[..., 0], logits[..., 1]
        return out
