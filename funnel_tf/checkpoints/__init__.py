"""Checkpoint import/export: our format (native), HuggingFace directories (hf), the original TF1
release (original) and our runs. `resolve(path)` says what a path is and how to load it;
`load_model(path)` loads it; every load is complete or raises CheckpointError naming the missing /
unexpected / mis-shaped tensors.

Submodules are imported lazily so `import funnel_tf.checkpoints` stays cheap (no TensorFlow); at
import it registers `load_model` / `save_pretrained` as the models' from_/save_pretrained.
"""

from typing import Optional, Sequence

from funnel_tf.checkpoints.errors import HEAD, CheckpointError
from funnel_tf.modeling import pretrained as _pretrained

FORMATS = ("native", "hf", "original", "training")  # training: a pretraining run (pretrain.py's model_dir)

__all__ = ["CheckpointError", "HEAD", "FORMATS", "resolve", "load_model", "save_pretrained",
           "from_pretrained", "export_hf"]


def resolve(path: str):
    """What `path` is and how to load it: a `checkpoints.resolver.Resolved` (see that module)."""
    from funnel_tf.checkpoints.resolver import resolve as resolve_path

    return resolve_path(path)


def load_model(path: str, model_class: Optional[str] = None, allow_missing: Sequence[str] = (),
               format: Optional[str] = None, return_report: bool = False, dtype=None, **kwargs):
    """Build and load a model from any supported checkpoint: ours, an HF folder, the original
    release, a pretraining run (its newest checkpoint, or a given checkpoints/ckpt-N) or a
    finetuning run (its best/ model).

    Args:
        path: the checkpoint (a folder, or a TF checkpoint prefix).
        model_class: the class (FunnelForSequenceClassification), its name, or a registry alias
            ("base", "full", "mlm", "electra", "seq_cls", "multiple_choice", "token_cls", "qa");
            default: the class the checkpoint holds (`Class.from_pretrained(path)` is the same
            with model_class=Class).
        allow_missing: fnmatch patterns (in the checkpoint's naming) or "head" for tensors that
            may keep their initial values; any other missing tensor is a CheckpointError.
        format: skip detection: one of FORMATS.
        return_report: also return the load report (what was loaded, missing, unused).
        dtype: the precision policy the model is built in ("float32", "mixed_bfloat16",
            "bfloat16"); default: the one the checkpoint was saved with, else the global policy.
            The variables hold the checkpoint's values (cast to bfloat16 for "bfloat16").
        **kwargs: for the format's loader (num_labels, net_config, truncate_seq, config overrides).

    Returns:
        The model, or (model, report) with return_report. A CheckpointError (a UserError) names
        the missing, unexpected or mis-shaped tensors.

    Example:

    >>> import tempfile
    >>> from funnel_tf import FunnelForSequenceClassification, load_config, load_model
    >>> config = load_config("tiny").replace(vocab_size=100, block_sizes=[1, 1], block_repeats=[1, 1])
    >>> folder = tempfile.mkdtemp()
    >>> _ = FunnelForSequenceClassification(config, num_labels=3).save_pretrained(folder)
    >>> model = load_model(folder)  # the class and config the folder holds
    >>> type(model).__name__, model.num_labels
    ('FunnelForSequenceClassification', 3)
    >>> type(load_model(folder, model_class="base")).__name__  # the backbone alone
    'FunnelBaseModel'
    """
    from funnel_tf.checkpoints.resolver import load_format

    _pretrained.check_dtype(dtype)  # before anything is read
    kwargs.update(model_class=model_class, allow_missing=allow_missing, return_report=return_report, dtype=dtype)
    if format is not None:
        return load_format(format, path, **kwargs)
    return resolve(path).load(**kwargs)


def save_pretrained(model, directory: str, overwrite: bool = False):
    """Our format into `directory`; a folder that is not empty needs overwrite=True."""
    from funnel_tf.checkpoints.native import save_pretrained as save

    return save(model, directory, overwrite=overwrite)


def from_pretrained(path: str, **kwargs):
    """Same as `load_model`: any format (ours, an HF folder, an original release, a run), resolved."""
    return load_model(path, **kwargs)


def export_hf(model, out_dir: str, allow_mask_pooling_change: bool = False):
    """An HF folder (config.json + weights) that `transformers` loads; see `hf.export_hf`."""
    from funnel_tf.checkpoints.hf import export_hf as export

    return export(model, out_dir, allow_mask_pooling_change=allow_mask_pooling_change)


_pretrained.register_checkpoint_io(load=load_model, save=save_pretrained)
