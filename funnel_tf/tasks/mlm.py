"""Masked-LM pretraining as a Task: MLM on the full (decoder) model, at the masked positions only.

Input features (from `funnel_tf.text`): input_ids (masked) / attention_mask / token_type_ids
int32 [B, L]; masked_positions / masked_ids int32 [B, P]; masked_weights float32 [B, P].
Loss = sum(CE * masked_weights) / sum(masked_weights) over the global batch (see tasks/base.py
for how the engine splits it across replicas). keras.ops: the TF and the JAX engine run this code.
"""

from __future__ import annotations

from typing import Optional

from keras import ops

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling.heads import FunnelForMaskedLM
from funnel_tf.tasks.base import MODEL_INPUTS, Task
from funnel_tf.tasks.inputs import PretrainingInputs
from funnel_tf.tasks.losses import divide_no_nan, masked_lm_terms

PRETRAINING_FEATURES = MODEL_INPUTS + ("masked_positions", "masked_ids", "masked_weights")


class MaskedLMTask(PretrainingInputs, Task):
    """MLM on FunnelModel's full-length decoder output (FunnelForMaskedLM, named "masked_lm")."""

    name = "mlm"
    metrics = {"loss": ("loss", None), "mlm_accuracy": ("mlm_correct", "mlm_count")}
    feature_keys = PRETRAINING_FEATURES

    def __init__(self, config: Optional[FunnelConfig] = None):
        self.config = config

    def build_model(self, config):
        return FunnelForMaskedLM(config, name="masked_lm")

    def local_normalizers(self, features):
        return {"mlm_count": ops.sum(ops.cast(features["masked_weights"], "float32"))}

    def loss_and_stats(self, features, normalizers, training, seed):
        self.check_features(features)
        out = self.model(self.model_inputs(features),
                         masked_positions=features["masked_positions"], training=training)
        ce_sum, correct, count = masked_lm_terms(out["logits"], features["masked_ids"],
                                                 features["masked_weights"])  # [B, P] -> sums
        loss = divide_no_nan(ce_sum, normalizers["mlm_count"])
        return loss, {"loss": loss, "mlm_correct": correct, "mlm_count": count}


__all__ = ["MaskedLMTask", "PRETRAINING_FEATURES"]
