"""`from_pretrained` / `save_pretrained` on every model class, HuggingFace style.

`modeling/` knows nothing of files: `funnel_tf.checkpoints` registers its loader and writer here
when it is imported (`import funnel_tf` imports it), so `load_model` stays the one loader that
resolves any checkpoint (ours, HF, original, a run) without modeling importing checkpoints.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from funnel_tf.errors import UserError

_IO = {}  # "load" -> checkpoints.load_model, "save" -> checkpoints.save_pretrained


def register_checkpoint_io(load: Callable, save: Callable) -> None:
    """Called by `funnel_tf.checkpoints` at import: the functions behind from_/save_pretrained."""
    _IO.update(load=load, save=save)


def _checkpoint_io(name: str) -> Callable:
    if name not in _IO:
        raise RuntimeError("no checkpoint loader registered: import funnel_tf.checkpoints (or funnel_tf) "
                           "before from_pretrained / save_pretrained")
    return _IO[name]


# The precision policies a model loads and computes in (`from_pretrained(path, dtype=...)`).
DTYPES = ("float32", "mixed_bfloat16", "bfloat16")


class ModelDTypeError(UserError, ValueError):
    """A dtype policy the models cannot compute in; names the ones they can."""


def check_dtype(dtype) -> None:
    """ModelDTypeError unless `dtype` is None (the checkpoint's or the global policy) or one of
    DTYPES, as a name or a keras.DTypePolicy (the policies the models are tested in)."""
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", type(dtype).__name__)
    if dtype is not None and name not in DTYPES:
        raise ModelDTypeError(f"dtype={name!r}: the models compute in one of {list(DTYPES)} (a Keras dtype "
                              f"policy name, e.g. dtype=\"mixed_bfloat16\": float32 weights, bfloat16 math)")


class PretrainedMixin:
    """Adds `Class.from_pretrained(path, **kwargs)` and `model.save_pretrained(directory)`."""

    # Head classes start a new task head when the checkpoint has none (HF does the same, with a
    # warning); backbones must load completely.
    is_task_model = False

    @classmethod
    def from_pretrained(cls, path: str, *, allow_missing: Optional[Sequence[str]] = None,
                        num_labels: Optional[int] = None, return_report: bool = False, dtype=None, **kwargs):
        """This class with weights from `path`: a funnel_tf directory, a HuggingFace directory
        (safetensors / .bin / tf_model.h5) or an original TF1 release.

        dtype: the precision policy the model computes in (one of DTYPES, e.g. "mixed_bfloat16":
        float32 variables holding the checkpoint's values, bfloat16 math; "bfloat16": bfloat16
        variables); default: the policy the checkpoint was saved with, else the global one.

        A task model loaded from a checkpoint without its head gets a freshly initialised head (the
        loader logs a warning naming its tensors; pass `allow_missing=()` to make that an error). Other kwargs
        go to `funnel_tf.checkpoints.load_model` (e.g. `hidden_dropout=0.0`, `truncate_seq`).
        """
        from funnel_tf.registry import MODEL_CLASSES

        if cls.__name__ not in MODEL_CLASSES.names():
            raise TypeError(f"{cls.__name__}.from_pretrained: only {list(MODEL_CLASSES.names())} load checkpoints; "
                            f"load the nearest of them and build {cls.__name__} from its layers")
        if allow_missing is None:
            allow_missing = ("head",) if cls.is_task_model else ()
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        model, report = _checkpoint_io("load")(path, model_class=cls.__name__, allow_missing=allow_missing,
                                               return_report=True, dtype=dtype, **kwargs)
        return (model, report) if return_report else model

    def save_pretrained(self, directory: str, overwrite: bool = False):
        """Write config.json, model.weights.h5 and funnel_tf.json into `directory`; returns their paths.
        `Class.from_pretrained(directory)` (or `funnel_tf.load_model`) reads it back. A folder that
        is not empty (other files, or an earlier save) is refused with a CheckpointError unless
        `overwrite=True`, which replaces those three files and keeps every other file."""
        return _checkpoint_io("save")(self, directory, overwrite=overwrite)
