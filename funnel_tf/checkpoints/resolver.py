"""The one door for checkpoints: `resolve(path)` says once what a path is (its kind, the concrete
thing to load, where its config and vocab are, the model class it holds) and `Resolved.load` loads
it; every run, `load_model` and `--init_checkpoint` go through here, so a path is inspected once.

Kinds: "native" (funnel_tf.json), "finetuning_run" (a model_dir holding best/, which stands for
it), "pretraining_run" (pretrain.py's model_dir, its checkpoints/ or one ckpt-N), "hf", "original"
(the TF1 release), and two that only warm-start a run's backbone: "training_checkpoint" (a TF2
checkpoint of ours outside a pretraining run) and "keras_weights" (a `*.weights.h5` file).

Local paths resolve without TensorFlow (JAX installs): only TF checkpoints (runs, the original
release) and non-local filesystems need it, and say so in a CheckpointError when it is missing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable, Optional

from funnel_tf.checkpoints import files, hf, native, original, training
from funnel_tf.checkpoints.errors import CheckpointError
from funnel_tf.checkpoints.pretraining_run import (RUN_ARGS, pretraining_run_of, run_model_class,
                                                    run_vocab)
from funnel_tf.config import ConfigError, FunnelConfig

BEST_DIR = "best"  # a finetuning run's best model, under its model_dir
VOCAB_NAMES = ("vocab.txt", "vocab.uncased.txt")
KINDS = ("native", "finetuning_run", "pretraining_run", "hf", "original", "training_checkpoint",
         "keras_weights")
# kind -> the format `load_model` reads it as; the last two kinds hold no model of their own.
FORMAT_OF = {"native": "native", "finetuning_run": "native", "pretraining_run": "training",
             "hf": "hf", "original": "original"}


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What a checkpoint path is and how to load it (see the module docstring for the kinds).

    source: the path as given; path: what is loaded (best/ of a finetuning run, the newest
    readable ckpt-N of a run or TF checkpoint, the `*.weights.h5` file); config_file: where its
    FunnelConfig comes from (None: unknown, the caller needs one); vocab: a vocab file beside it;
    model_class: the class it holds when known; pretrain_args: a pretraining run's settings file
    beside it (which names the run's vocab).
    """

    kind: str
    source: str
    path: str
    config_file: Optional[str] = None
    vocab: Optional[str] = None
    model_class: Optional[str] = None
    pretrain_args: Optional[str] = None

    @property
    def format(self) -> Optional[str]:
        """The `load_model` format ("native", "hf", "original", "training"); None for a loose
        training checkpoint or weights file, which only warm-start a run's backbone."""
        return FORMAT_OF.get(self.kind)

    @property
    def holds_model(self) -> bool:
        return self.format is not None

    def read_config(self) -> FunnelConfig:
        """The checkpoint's own FunnelConfig; CheckpointError when it has none or it is unreadable."""
        if self.config_file is None:
            raise CheckpointError("no config found next to the checkpoint; pass --config", source=self.source)
        if self.kind == "hf":
            return hf.read_hf_config(self.path)[1]
        if self.kind == "original":
            return original.read_original_config(self.config_file)
        return read_config_file(self.config_file)

    def load(self, model_class=None, allow_missing=(), return_report: bool = False, **kwargs):
        """The model it holds, as `funnel_tf.load_model` builds it (kwargs go to the format's loader)."""
        if self.kind == "training_checkpoint":
            raise CheckpointError(
                "a funnel-tf training checkpoint, but not inside a pretraining run folder: pass the run's "
                "model_dir (config.json, pretrain_args.json, checkpoints/) or one of its checkpoints/ckpt-N; "
                "a finetuning run loads as its model_dir once it has written best/", source=self.source)
        if self.kind == "keras_weights":
            if files.isdir(self.source):
                raise CheckpointError(
                    f"{native.WEIGHTS_NAME} without {native.MARKER_NAME}: a funnel_tf checkpoint needs "
                    f"the marker written by save_pretrained (model class + weight manifest)", source=self.source)
            raise not_a_checkpoint(self.source)
        return load_format(self.format, self.path, model_class=model_class, allow_missing=allow_missing,
                           return_report=return_report, **kwargs)


def load_format(fmt: str, path: str, **kwargs):
    """`path` loaded by the loader of format `fmt` (no detection: `convert --from`)."""
    if fmt == "training":
        from funnel_tf.checkpoints.pretraining_run import load_pretraining_run as load
    elif fmt == "native":
        load = native.from_pretrained
    elif fmt == "hf":
        load = hf.load_hf
    elif fmt == "original":
        load = original.load_original
    else:
        raise ValueError(f"unknown checkpoint format {fmt!r}; use one of {sorted(set(FORMAT_OF.values()))}")
    return load(path, **kwargs)


def has_best(model_dir: str) -> bool:
    """True when `model_dir` holds a finetuning run's best/ model (its marker file: exact on every
    filesystem, unlike a folder check on ram://, which also matches best_result.json)."""
    return native.is_native_dir(os.path.join(model_dir, BEST_DIR))


def next_to(path: str, names: Iterable[str]) -> Optional[str]:
    """The first of `names` in the checkpoint's folder, its best/ or its parent folder, or None."""
    base = path if files.isdir(path) else os.path.dirname(path)
    for folder in (base, os.path.join(base, BEST_DIR), os.path.dirname(base.rstrip("/"))):
        for name in names:
            candidate = os.path.join(folder, name)
            if files.exists(candidate):
                return candidate
    return None


def find_vocab(target: "Resolved | str") -> Optional[str]:
    """The vocab of a checkpoint: a vocab file beside it (vocab.txt / vocab.uncased.txt in its
    folder, best/ or parent; `target` resolved, or a folder that may hold one), else the vocab its
    pretraining run's pretrain_args.json names, else None. CheckpointError when the run names a
    vocab that is gone."""
    if isinstance(target, Resolved):
        vocab, args_path = target.vocab, target.pretrain_args
    else:
        vocab, args_path = next_to(target, VOCAB_NAMES), next_to(target, [RUN_ARGS])
    return vocab or (run_vocab(args_path) if args_path else None)


def not_a_checkpoint(path: str) -> CheckpointError:
    """The error for a path that is none of the kinds, listing what is read."""
    if "://" in path:
        return CheckpointError(
            "not a funnel_tf directory (funnel_tf.json) or pretraining run: on non-local storage only our "
            "own formats load (and, as --init_checkpoint, our training checkpoints and *.weights.h5 files); "
            "copy HF or original checkpoints to a local folder first", source=path)
    found = sorted(os.listdir(path)) if os.path.isdir(path) else "a file"
    return CheckpointError(
        f"not a checkpoint this project reads; expected a funnel-tf training checkpoint or run folder "
        f"(pretrain.py's model_dir or one of its checkpoints/ckpt-N; a finetuning model_dir with {BEST_DIR}/), "
        f"a *.weights.h5 file, a funnel_tf directory ({native.MARKER_NAME}), a HuggingFace directory "
        f"({hf.CONFIG_NAME} + one of {list(hf.WEIGHT_FILES)}) or an original TF1 release "
        f"({original.NET_CONFIG_NAME} + model.ckpt-*); found {found}", source=path)


def resolve(path: str) -> Resolved:
    """What `path` is (see the module docstring); CheckpointError when it is none of the kinds.

    Reads only small files (markers, configs, a checkpoint's index), never the weights."""
    source = path
    if not (files.exists(path) or files.exists(path + ".index")):
        raise CheckpointError("not found (no such file or directory)", source=path)
    is_dir = files.isdir(path)
    local = "://" not in path
    beside = dict(source=source, vocab=next_to(source, VOCAB_NAMES), pretrain_args=next_to(source, [RUN_ARGS]))
    if is_dir and has_best(path):
        best = os.path.join(path, BEST_DIR)
        return Resolved("finetuning_run", path=best, config_file=os.path.join(best, native.CONFIG_NAME),
                        model_class=_marker_class(best), **beside)
    if is_dir and native.is_native_dir(path):
        return Resolved("native", path=path, config_file=os.path.join(path, native.CONFIG_NAME),
                        model_class=_marker_class(path), **beside)
    run = pretraining_run_of(path)
    if run:
        try:
            prefix = training.resolve_checkpoint(path)  # a folder: its newest readable checkpoint
        except CheckpointError as e:
            raise CheckpointError(f"a pretraining run without a usable checkpoint: {e} (a run "
                                  f"saves one every --save_every steps)", source=path) from None
        return Resolved("pretraining_run", path=prefix, config_file=os.path.join(run, "config.json"),
                        model_class=run_model_class(run), **beside)
    if training.is_training_checkpoint(path):
        return Resolved("training_checkpoint", path=training.resolve_checkpoint(path),
                        config_file=next_to(path, ["config.json"]), **beside)
    if path.endswith(".h5") and not is_dir:
        return Resolved("keras_weights", path=path, config_file=next_to(path, ["config.json"]), **beside)
    if is_dir and files.exists(os.path.join(path, native.WEIGHTS_NAME)):  # ours, without its marker
        return Resolved("keras_weights", path=training.weights_file(path),
                        config_file=next_to(path, ["config.json"]), **beside)
    if local and original.is_original_dir(path):
        folder = path if is_dir else os.path.dirname(path)
        return Resolved("original", path=path, config_file=os.path.join(folder, original.NET_CONFIG_NAME),
                        **beside)
    if local and is_dir and (hf.is_hf_dir(path) or os.path.exists(os.path.join(path, hf.CONFIG_NAME))):
        return Resolved("hf", path=path, config_file=os.path.join(path, hf.CONFIG_NAME),
                        model_class=_hf_class(path), **beside)
    h5 = training.weights_file(path) if is_dir else None  # a folder holding one *.weights.h5
    if h5:
        return Resolved("keras_weights", path=h5, config_file=next_to(path, ["config.json"]), **beside)
    raise not_a_checkpoint(path)


def _marker_class(directory: str) -> Optional[str]:
    try:
        return native.read_marker(directory).get("model_class")
    except CheckpointError:
        return None  # the load says what is wrong with the marker


def _hf_class(directory: str) -> Optional[str]:
    try:
        with open(os.path.join(directory, hf.CONFIG_NAME), encoding="utf-8") as f:
            architectures = json.load(f).get("architectures") or [None]
        return architectures[0]
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def read_config_file(path: str) -> FunnelConfig:
    """`FunnelConfig.from_json_file` for local paths; other filesystems (gs://) are read through
    tf.io.gfile and parsed by the same rules (original net_config, HF config, or ours)."""
    if files.is_local(path):
        return FunnelConfig.from_json_file(path)
    try:
        with files.open_file(path) as f:
            d = json.loads(f.read())
    except (json.JSONDecodeError, *files.read_errors()) as e:
        raise CheckpointError(f"cannot read the model config: {str(e).splitlines()[0]}", source=path) from None
    try:
        if "block_size" in d:
            return FunnelConfig.from_original_dict(d)
        if "transformers_version" in d or "architectures" in d:
            return FunnelConfig.from_hf_dict(d)
        return FunnelConfig.from_dict(d)
    except ConfigError as e:
        raise CheckpointError(f"cannot read the model config: {e}", source=path) from None
