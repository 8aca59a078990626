"""Model classes by name: our class names (= HF architecture names) and the short CLI aliases.

The classes are imported on first use, so listing names (e.g. `convert --help`) does not load TensorFlow.
"""

from typing import Any, Dict, Union

from funnel_tf.errors import UserError

CLASS_NAMES = ("FunnelBaseModel", "FunnelModel", "FunnelForMaskedLM", "FunnelForPreTraining",
               "FunnelForSequenceClassification", "FunnelForMultipleChoice", "FunnelForTokenClassification",
               "FunnelForQuestionAnswering")

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


def model_classes() -> Dict[str, type]:
    """Class name -> class."""
    from funnel_tf.modeling import heads, model

    return {name: getattr(model if name in ("FunnelBaseModel", "FunnelModel") else heads, name)
            for name in CLASS_NAMES}


class UnknownModelClassError(UserError, ValueError):
    """A model class that is neither one of ours nor an alias of one."""


def resolve_class_name(name: Union[str, type]) -> str:
    """An alias ("mlm"), class name ("FunnelForMaskedLM") or the class itself -> the class name;
    UnknownModelClassError (a ValueError) if unknown."""
    if isinstance(name, type):
        name = name.__name__
    key = ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in CLASS_NAMES:
        raise UnknownModelClassError(f"unknown model class {name!r}; use one of {sorted(ALIASES)} or "
                                     f"{list(CLASS_NAMES)}")
    return key


def build_model(class_name: str, config, **kwargs: Any):
    """Construct (weights created at construction) the named class."""
    return model_classes()[resolve_class_name(class_name)](config, **kwargs)


def head_kwargs(model) -> Dict[str, Any]:
    """Constructor arguments besides the config (num_labels) that rebuild `model`'s head."""
    if type(model).__name__ in WITH_NUM_LABELS:
        return {"num_labels": int(model.num_labels)}
    return {}
