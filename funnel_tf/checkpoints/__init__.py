"""Checkpoint import/export: our format (native), HuggingFace directories (hf) and the original TF1
release (original). `load_model(path)` detects the format; every load is complete or raises
CheckpointError naming the missing / unexpected / mis-shaped tensors.

Submodules are imported lazily so `import funnel_tf.checkpoints` stays cheap.
"""

import os
from typing import Optional, Sequence

from funnel_tf.checkpoints.errors import HEAD, CheckpointError

FORMATS = ("native", "hf", "original", "training")  # training: a pretraining run (pretrain.py's model_dir)

__all__ = ["CheckpointError", "HEAD", "FORMATS", "detect_format", "load_model", "save_pretrained",
           "from_pretrained", "export_hf"]


def detect_format(path: str) -> str:
    """'native' (funnel_tf.json), 'training' (a pretraining run: its model_dir, checkpoints/ or a
    ckpt-N prefix), 'original' (net_config.json or a TF checkpoint) or 'hf' (config.json or HF
    weight files); CheckpointError when `path` is none of them."""
    from funnel_tf.checkpoints import hf, native, original
    from funnel_tf.checkpoints.init_checkpoint import pretraining_run_of

    if "://" in path:  # gs:// (ram:// in tests): only our own formats are read through tf.io.gfile
        if native.is_native_dir(path):
            return "native"
        if pretraining_run_of(path):
            return "training"
        raise CheckpointError("not a funnel_tf directory (funnel_tf.json) or pretraining run: on non-local "
                              "storage only our own formats load; copy HF or original checkpoints to a local "
                              "folder first", source=path)
    if not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise CheckpointError("no such file or directory", source=path)
    if os.path.isdir(path) and native.is_native_dir(path):
        return "native"
    if pretraining_run_of(path):
        return "training"
    _refuse_loose_training_checkpoint(path)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, native.WEIGHTS_NAME)):
        raise CheckpointError(f"{native.WEIGHTS_NAME} without {native.MARKER_NAME}: a funnel_tf checkpoint "
                              f"needs the marker written by save_pretrained (model class + weight manifest)",
                              source=path)
    if original.is_original_dir(path):
        return "original"
    if os.path.isdir(path) and (hf.is_hf_dir(path) or os.path.exists(os.path.join(path, hf.CONFIG_NAME))):
        return "hf"
    found = sorted(os.listdir(path)) if os.path.isdir(path) else "a file"
    raise CheckpointError(
        f"not a checkpoint: expected a funnel_tf directory ({native.MARKER_NAME}), a pretraining run "
        f"(pretrain.py's model_dir or one of its checkpoints/ckpt-N), a HuggingFace directory "
        f"({hf.CONFIG_NAME} + one of {list(hf.WEIGHT_FILES)}) or an original TF1 release "
        f"({original.NET_CONFIG_NAME} + model.ckpt-*); found {found}", source=path)


def _refuse_loose_training_checkpoint(path: str) -> None:
    """A TF2 training checkpoint (our runs write them) outside a pretraining run folder: the model
    it holds is only known from that run's config.json, so say where to point instead."""
    from funnel_tf.checkpoints.init_checkpoint import is_training_checkpoint

    if is_training_checkpoint(path):
        raise CheckpointError(
            "a funnel-tf training checkpoint, but not inside a pretraining run folder: pass the run's "
            "model_dir (config.json, pretrain_args.json, checkpoints/) or one of its checkpoints/ckpt-N; "
            "a finetuning run loads as its model_dir once it has written best/", source=path)


def load_model(path: str, model_class: Optional[str] = None, allow_missing: Sequence[str] = (),
               format: Optional[str] = None, return_report: bool = False, **kwargs):
    """Build and load a model from any supported checkpoint: ours, an HF folder, the original
    release, a pretraining run (its newest checkpoint, or a given checkpoints/ckpt-N) or a
    finetuning run (its best/ model).

    model_class: the class (FunnelForSequenceClassification), its name, or a registry alias ("base",
    "full", "mlm", "electra", "seq_cls", "multiple_choice", "token_cls", "qa"); default: the class
    the checkpoint holds (`Class.from_pretrained(path)` is the same with model_class=Class). allow_missing:
    fnmatch patterns (in the checkpoint's naming) or "head" for tensors that may keep their initial
    values. kwargs go to the format's loader (num_labels, net_config, truncate_seq, config overrides).
    """
    if format is None:
        from funnel_tf.checkpoints.init_checkpoint import resolve

        path = resolve(path)  # a finetuning run's model_dir stands for its best/ model
    fmt = format or detect_format(path)
    if fmt == "training":
        from funnel_tf.checkpoints.init_checkpoint import load_pretraining_run as load
    elif fmt == "native":
        from funnel_tf.checkpoints.native import from_pretrained as load
    elif fmt == "hf":
        from funnel_tf.checkpoints.hf import load_hf as load
    elif fmt == "original":
        from funnel_tf.checkpoints.original import load_original as load
    else:
        raise ValueError(f"unknown checkpoint format {fmt!r}; use one of {FORMATS}")
    return load(path, model_class=model_class, allow_missing=allow_missing, return_report=return_report, **kwargs)


def save_pretrained(model, directory: str, overwrite: bool = False):
    """Our format into `directory`; a folder that is not empty needs overwrite=True."""
    from funnel_tf.checkpoints.native import save_pretrained as save

    return save(model, directory, overwrite=overwrite)


def from_pretrained(path: str, **kwargs):
    """Same as `load_model`: any format (ours, an HF folder, an original release), detected."""
    return load_model(path, **kwargs)


def export_hf(model, out_dir: str, allow_mask_pooling_change: bool = False):
    from funnel_tf.checkpoints.hf import export_hf as export

    return export(model, out_dir, allow_mask_pooling_change=allow_mask_pooling_change)
