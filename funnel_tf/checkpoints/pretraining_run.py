"""A pretraining run's model_dir (config.json, pretrain_args.json, checkpoints/ckpt-N) as a model:
its objective's model is rebuilt from the run's files and restored from the tables the run saved,
then copied by name into the class asked for. Knows the run's file layout, not the pretraining code.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from funnel_tf.checkpoints import files
from funnel_tf.checkpoints.errors import CheckpointError
from funnel_tf.checkpoints.training import model_weights, resolve_checkpoint

RUN_CONFIG = "config.json"           # what pretraining/run.py writes into its model_dir
RUN_ARGS = "pretrain_args.json"
CHECKPOINTS_DIR = "checkpoints"
RECORDS_MANIFEST = "manifest.json"   # beside a run's records (text/pretraining.py MANIFEST_NAME)

# objective -> (table of the checkpoint, class, Keras name) of the model whose weights a run's
# checkpoint holds for it (as pretraining/objectives.py builds them: the Keras name fixes the
# variable paths that key the table). ELECTRA's generator is not needed to rebuild the discriminator.
RUN_MODELS = {"mlm": ("model", "FunnelForMaskedLM", "masked_lm"),
              "electra": ("discriminator", "FunnelForPreTraining", "discriminator")}


def pretraining_run_of(path: str) -> Optional[str]:
    """The model_dir of a pretraining run when `path` is one (config.json + pretrain_args.json),
    its checkpoints/ folder or a ckpt-N prefix in there; None for anything else."""
    def is_run(folder):
        return all(files.exists(os.path.join(folder, n)) for n in (RUN_CONFIG, RUN_ARGS))

    path = path.rstrip("/")
    if files.isdir(path):
        if is_run(path):
            return path
        parent = os.path.dirname(path)
        return parent if os.path.basename(path) == CHECKPOINTS_DIR and is_run(parent) else None
    if files.exists(path + ".index"):
        folder = os.path.dirname(path)
        parent = os.path.dirname(folder)
        return parent if os.path.basename(folder) == CHECKPOINTS_DIR and is_run(parent) else None
    return None


def read_run_args(run: str) -> dict:
    """The run's pretrain_args.json; CheckpointError when it cannot be read."""
    try:
        with files.open_file(os.path.join(run, RUN_ARGS)) as f:
            args = json.loads(f.read())
    except (ValueError, *files.read_errors()) as e:
        raise CheckpointError(f"cannot read the run's settings: {e}", source=run) from None
    if not isinstance(args, dict):
        raise CheckpointError(f"cannot read the run's settings: {RUN_ARGS} is not an object", source=run)
    return args


def run_vocab(args_path: str) -> Optional[str]:
    """The vocab of the pretraining run whose pretrain_args.json is `args_path`: its --vocab, the
    demo vocab for the demo, or the vocab_path in its records' manifest.json (runs from before
    pretraining copied its vocab into model_dir); None when unreadable or naming none.
    CheckpointError when the file it names is gone."""
    try:
        with files.open_file(args_path) as f:
            saved = json.loads(f.read())
    except (ValueError, *files.read_errors()):
        return None
    if not isinstance(saved, dict):
        return None
    vocab = saved.get("vocab")
    if not vocab:
        from funnel_tf import resources

        train_data = saved.get("train_data")
        vocab = _records_vocab(train_data) if train_data else resources.demo_vocab_path()
    if not vocab:
        return None
    if not files.exists(vocab) and files.is_local(vocab) and not os.path.isabs(vocab):
        beside = os.path.join(os.path.dirname(args_path), vocab)
        vocab = beside if files.exists(beside) else vocab
    if not files.exists(vocab):
        raise CheckpointError(f"{args_path} names the vocab {vocab}, which is not found")
    return vocab


def _records_vocab(train_data) -> Optional[str]:
    """The vocab_path in the manifest.json beside a run's --train_data files (comma-separated
    globs, all in one folder), else None."""
    items = train_data if isinstance(train_data, (list, tuple)) else [train_data]
    patterns = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    try:
        matched = [f for p in patterns for f in files.glob(p) if not files.isdir(f)]
        folders = {os.path.dirname(f) for f in matched}
        if len(folders) != 1:
            return None
        with files.open_file(os.path.join(folders.pop(), RECORDS_MANIFEST)) as f:
            manifest = json.loads(f.read())
    except (ValueError, *files.read_errors()):
        return None
    vocab = manifest.get("vocab_path") if isinstance(manifest, dict) else None
    return vocab if isinstance(vocab, str) and vocab else None


def run_model_class(run: str) -> Optional[str]:
    """The class of the model a pretraining run trains (its objective's), or None when unknown."""
    try:
        objective = read_run_args(run).get("objective") or "mlm"
    except CheckpointError:
        return None
    return RUN_MODELS.get(objective, (None, None))[1]


def load_pretraining_run(path: str, model_class=None, allow_missing=(), num_labels: Optional[int] = None,
                         return_report: bool = False, dtype=None, **config_overrides):
    """A model from a pretraining run (`path`: its model_dir or checkpoints/ folder, whose newest
    readable checkpoint is used, or one ckpt-N prefix), as `funnel_tf.load_model` returns it.

    The run's model (the discriminator of an ELECTRA run, else the MLM model) is rebuilt from its
    config.json and restored from the table the run saved (`training.model_weights`), every weight
    or a CheckpointError; it is then copied by name into `model_class` (default: that model's class;
    "base", "seq_cls", ... take its backbone, head tensors they lack need allow_missing).
    Needs the TensorFlow backend (a TF object checkpoint restores into TF variables): on another
    backend, save the model with save_pretrained under TensorFlow first."""
    import keras

    from funnel_tf.checkpoints.native import copy_weights
    from funnel_tf.checkpoints.registry import WITH_NUM_LABELS, build_model, resolve_class_name
    from funnel_tf.config import ConfigError, FunnelConfig

    run = pretraining_run_of(path)
    if run is None:
        raise CheckpointError(f"not a pretraining run (a model_dir with {RUN_CONFIG}, {RUN_ARGS} "
                              f"and {CHECKPOINTS_DIR}/ckpt-N)", source=path)
    tf = files.tensorflow("a pretraining run's checkpoint (TF format)", source=path)
    if keras.backend.backend() != "tensorflow":
        raise CheckpointError(
            f"a pretraining run's TF checkpoint loads under the TensorFlow backend only (Keras runs on "
            f"{keras.backend.backend()!r} here): load it with KERAS_BACKEND=tensorflow and save_pretrained "
            f"it (or funnel-convert it), then load that folder on any backend", source=path)
    try:
        prefix = resolve_checkpoint(path)  # a folder: its newest readable checkpoint
    except CheckpointError as e:
        raise CheckpointError(f"a pretraining run without a usable checkpoint: {e} (a run "
                              f"saves one every --save_every steps)", source=path) from None
    try:
        config = FunnelConfig.from_json_file(os.path.join(run, RUN_CONFIG))
        if config_overrides:
            config = config.replace(**config_overrides)
    except (ConfigError, ValueError) as e:
        raise CheckpointError(f"cannot read the run's settings: {e}", source=run) from None
    objective = read_run_args(run).get("objective") or "mlm"
    if objective not in RUN_MODELS:
        raise CheckpointError(f"a run of objective {objective!r}; this version reads {sorted(RUN_MODELS)}",
                              source=run)
    table_name, class_name, keras_name = RUN_MODELS[objective]
    with tf.device("/cpu:0"):
        source = build_model(class_name, config, name=keras_name)
    try:
        status = tf.train.Checkpoint(weights={table_name: model_weights(source)}).read(prefix)
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise CheckpointError(
            f"does not hold the {objective} run's {table_name} of its config.json "
            f"({str(e).splitlines()[0][:300]})", source=prefix) from None
    except (tf.errors.OpError, IndexError) as e:
        raise CheckpointError(f"cannot read this checkpoint ({str(e).splitlines()[0][:200]})",
                              source=prefix) from None
    target_name = resolve_class_name(model_class) if model_class else type(source).__name__
    target_kwargs = {"num_labels": int(num_labels or 2)} if target_name in WITH_NUM_LABELS else {}
    if num_labels is not None and not target_kwargs:
        raise CheckpointError(f"num_labels only applies to {list(WITH_NUM_LABELS)}", source=path)
    target = build_model(target_name, config, dtype=dtype, **target_kwargs)  # dtype: its policy
    report = copy_weights(source, target, allow_missing=allow_missing, source=prefix)
    report.format = "pretraining run"
    del source
    return (target, report) if return_report else target
