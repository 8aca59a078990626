"""Building model classes by name for the checkpoint loaders. The names and aliases themselves are
registered once in `funnel_tf.registry.MODEL_CLASSES` (importable from modeling/ without checkpoints/).

The classes are imported on first use, so listing names (e.g. `convert --help`) does not load TensorFlow.
"""

from typing import Any, Dict

from funnel_tf.registry import MODEL_CLASSES, resolve_class_name

# Classes whose constructor takes num_labels.
WITH_NUM_LABELS = ("FunnelForSequenceClassification", "FunnelForTokenClassification")


def model_classes() -> Dict[str, type]:
    """Class name -> class."""
    from funnel_tf.modeling import heads, model

    return {name: getattr(model if name in ("FunnelBaseModel", "FunnelModel") else heads, name)
            for name in MODEL_CLASSES.names()}


def build_model(class_name: str, config, **kwargs: Any):
    """Construct (weights created at construction) the named class."""
    return model_classes()[resolve_class_name(class_name)](config, **kwargs)


def head_kwargs(model) -> Dict[str, Any]:
    """Constructor arguments besides the config (num_labels) that rebuild `model`'s head."""
    if type(model).__name__ in WITH_NUM_LABELS:
        return {"num_labels": int(model.num_labels)}
    return {}
