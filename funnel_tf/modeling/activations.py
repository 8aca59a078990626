"""Activation lookup by HF name; "gelu_new" is the tanh approximation every release uses."""

import keras


def get_activation(name: str):
    """Return a callable for an HF `hidden_act` name."""
    if name == "gelu_new":
        return lambda x: keras.activations.gelu(x, approximate=True)
    if name == "gelu":  # HF "gelu" is the exact erf form
        return lambda x: keras.activations.gelu(x, approximate=False)
    if name in ("swish", "silu"):
        return keras.activations.silu
    if name in ("relu", "tanh"):
        return getattr(keras.activations, name)
    raise ValueError(f"unsupported activation {name!r}")
