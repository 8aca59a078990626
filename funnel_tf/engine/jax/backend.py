"""Which Keras backend a run uses: --backend, or KERAS_BACKEND, chosen before Keras is first
imported (Keras reads KERAS_BACKEND once, on import). No Keras / JAX / TensorFlow import here."""

from __future__ import annotations

import os
import sys
from typing import Optional

from funnel_tf.errors import UserError

BACKENDS = ("tensorflow", "jax")


class BackendError(UserError, ValueError):
    """--backend cannot be honoured in this process (it disagrees with KERAS_BACKEND or with the
    backend Keras already loaded)."""


def choose_backend(flag: Optional[str]) -> str:
    """The backend of this run: `flag` (None: KERAS_BACKEND, else tensorflow). Sets KERAS_BACKEND
    when Keras is not loaded yet; otherwise the flag must name the backend Keras runs on."""
    env = os.environ.get("KERAS_BACKEND") or None
    if flag is not None and flag not in BACKENDS:
        raise BackendError(f"--backend={flag}: must be one of {', '.join(BACKENDS)}")
    if "keras" in sys.modules and hasattr(sys.modules["keras"], "backend"):
        current = sys.modules["keras"].backend.backend()
        if flag is not None and flag != current:
            raise BackendError(f"--backend={flag}, but Keras already runs on {current} in this "
                               f"process; set KERAS_BACKEND={flag} before Keras is imported")
        if current not in BACKENDS:
            raise BackendError(f"Keras runs on {current}; training runs on "
                               f"{' or '.join(BACKENDS)}")
        return current
    if flag is not None and env is not None and env != flag:
        raise BackendError(f"--backend={flag} disagrees with KERAS_BACKEND={env}; unset one or "
                           f"make them agree")
    chosen = flag or env or "tensorflow"
    if chosen not in BACKENDS:
        raise BackendError(f"KERAS_BACKEND={chosen}: training runs on {' or '.join(BACKENDS)}")
    os.environ["KERAS_BACKEND"] = chosen
    return chosen
