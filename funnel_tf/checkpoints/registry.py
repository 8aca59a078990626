"""Model classes by name: our class names (= HF architecture names) and the short CLI aliases."""

from typing import Any, Dict

from funnel_tf.modeling import heads
from funnel_tf.modeling.model import FunnelBaseModel, FunnelModel

MODEL_CLASSES = {cls.__name__: cls for cls in (
    FunnelBaseModel, FunnelModel, heads.FunnelForMaskedLM, heads.FunnelForPreTraining,
    heads.FunnelForSequenceClassification, heads.FunnelForMultipleChoice, heads.FunnelForTokenClassification,
    heads.FunnelForQuestionAnswering)}

ALIASES = {
    "base": "FunnelBaseModel",
    "full": "FunnelModel",
    "mlm": "FunnelForMaskedLM",
    "electra": "FunnelForPreTraining",
    "pretraining": "FunnelForPreTraining",
    "seq_cls": "FunnelForSequenceClassification",
    "classification": "FunnelForSequenceClassification",
    "regression": "FunnelForSequenceClassification",
    "multiple_choice": "FunnelForMultipleChoice",
    "token_cls": "FunnelForTokenClassification",
    "qa": "FunnelForQuestionAnswering",
}

# Classes whose constructor takes num_labels.
WITH_NUM_LABELS = ("FunnelForSequenceClassification", "FunnelForTokenClassification")


def resolve_class_name(name: str) -> str:
    """An alias ("mlm") or class name ("FunnelForMaskedLM") -> the class name; ValueError if unknown."""
    key = ALIASES.get(name, name)
    if key not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {name!r}; use one of {sorted(ALIASES)} "
                         f"or {sorted(MODEL_CLASSES)}")
    return key


def build_model(class_name: str, config, **kwargs: Any):
    """Construct (weights created at construction) the named class."""
    return MODEL_CLASSES[resolve_class_name(class_name)](config, **kwargs)


def head_kwargs(model) -> Dict[str, Any]:
    """Constructor arguments besides the config (num_labels) that rebuild `model`'s head."""
    if type(model).__name__ in WITH_NUM_LABELS:
        return {"num_labels": int(model.num_labels)}
    return {}
