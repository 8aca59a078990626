"""funnel-tf: Funnel-Transformer in TensorFlow 2 / Keras 3.

    from funnel_tf import FunnelForSequenceClassification, FunnelTokenizer, FunnelTextClassifier

The public names below load on first use (module `__getattr__`), so `import funnel_tf` stays
cheap and does not import TensorFlow.
"""

import importlib

__version__ = "0.1.0"

_HEADS = ("FunnelForMaskedLM", "FunnelForPreTraining", "FunnelForSequenceClassification",
          "FunnelForMultipleChoice", "FunnelForTokenClassification", "FunnelForQuestionAnswering")

# Public name -> the module that defines it.
_LAZY = {
    "FunnelConfig": "funnel_tf.config",
    "load_config": "funnel_tf.config",
    "FunnelBaseModel": "funnel_tf.modeling.model",
    "FunnelModel": "funnel_tf.modeling.model",
    **{name: "funnel_tf.modeling.heads" for name in _HEADS},
    "FunnelTokenizer": "funnel_tf.tokenizer",
    "FunnelTextClassifier": "funnel_tf.classifier",
    "load_model": "funnel_tf.checkpoints",
    "UserError": "funnel_tf.errors",
}

__all__ = ["__version__", *_LAZY]

# The checkpoint loaders register themselves with modeling's from_/save_pretrained (modeling/ does
# not import checkpoints/); cheap: no TensorFlow.
from funnel_tf import checkpoints as _checkpoints  # noqa: E402,F401


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'funnel_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
