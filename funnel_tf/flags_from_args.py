"""One config schema for the command line: absl flags generated from the run dataclasses' fields.

A field of `PretrainArgs` / `FinetuneArgs` declares its flag in `dataclasses.field(metadata=flag(...))`
(help text, choices, a deprecated old spelling); a dict-valued field (FinetuneArgs.hparams, .run,
.files, .csv_options) declares the flags it is assembled from with `flag_group(...)`. `define_flags`
turns the fields into absl flags, `args_from_flags` the parsed flags back into the dataclass, so a
flag is written down once, where the run reads it. Nothing here imports absl or TensorFlow until
called: the library dataclasses import this module only for `flag` / `flag_group` / `ENGINE_FLAGS`.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from funnel_tf.engine.choices import JIT_MODES, PRECISIONS, STRATEGIES

_UNSET = object()
_KINDS = ("string", "integer", "float", "bool", "enum", "list", "multi_string")


@dataclasses.dataclass(frozen=True)
class FlagSpec:
    """How one flag looks on the command line. `kind` is inferred from the field's type when
    empty; `default` is the field's default unless given; `from_flag(value, flags)` maps the
    parsed value onto the field (identity when None); `deprecated` are old spellings kept as
    aliases that warn when used."""

    help: str
    kind: str = ""
    choices: Optional[Tuple[str, ...]] = None
    default: Any = _UNSET
    from_flag: Optional[Callable[[Any, Any], Any]] = None
    deprecated: Tuple[str, ...] = ()


def flag(help: str, *, kind: str = "", choices: Optional[Sequence[str]] = None, default: Any = _UNSET,
         from_flag: Optional[Callable[[Any, Any], Any]] = None,
         deprecated: Sequence[str] = ()) -> Dict[str, FlagSpec]:
    """Field metadata declaring the field's flag (same name as the field)."""
    return {"flag": FlagSpec(help, kind, tuple(choices) if choices else None, default, from_flag,
                             tuple(deprecated))}


def flag_group(flags: Mapping[str, FlagSpec],
               assemble: Callable[[Dict[str, Any], Any], Any]) -> Dict[str, Any]:
    """Field metadata for a field built from several flags: `flags` name -> FlagSpec (each with
    its kind and default), `assemble(values, flags)` -> the field's value."""
    for name, spec in flags.items():
        if spec.kind not in _KINDS or spec.default is _UNSET:
            raise ValueError(f"group flag --{name} needs a kind and a default")
    return {"flag_group": (dict(flags), assemble)}


def with_help(spec_meta: Mapping[str, FlagSpec], extra: str = "", **changes) -> Dict[str, FlagSpec]:
    """A copy of shared `flag(...)` metadata with text appended to its help and other changes."""
    spec = spec_meta["flag"]
    return {"flag": dataclasses.replace(spec, help=spec.help + extra, **changes)}


# The flags pretrain.py and finetune.py share, one meaning each: where the run goes (strategy, TPU)
# and how it computes (precision, XLA, non-finite steps). Precision and strategy names are the
# engine's (funnel_tf.engine); only their help lives here.
ENGINE_FLAGS: Dict[str, Dict[str, FlagSpec]] = {
    "tpu": flag("TPU to run on: 'local' on a TPU VM, a TPU name, or a grpc:// address. Implies "
                "--strategy=tpu."),
    "tpu_zone": flag("GCE zone of a named TPU (with --tpu=<name>)."),
    "gcp_project": flag("GCP project of a named TPU (with --tpu=<name>)."),
    "strategy": flag("Distribution: default (one device), cpu, one_device, mirrored (all local "
                     "GPUs), multi_worker (MultiWorkerMirroredStrategy from TF_CONFIG), tpu. "
                     "Default: tpu when --tpu is given, else default.", kind="enum",
                     choices=STRATEGIES),
    "precision": flag("float32, or mixed_bfloat16 (bf16 compute, float32 variables, logits and "
                      "losses). auto: mixed_bfloat16 on TPU, float32 elsewhere.",
                      choices=PRECISIONS),
    "jit_compile": flag("XLA-compile the whole train (and predict) step. auto: on for GPU/TPU; off "
                        "on CPU, where the model runs on TF's kernels with its elementwise parts "
                        "XLA-fused and the update (clipping, AdamW and, with mixed_bfloat16, the "
                        "bf16 weight copies the forward reads) one XLA function: the fastest CPU "
                        "path with mixed_bfloat16, within ~5% of whole-step XLA in float32, and it "
                        "starts sooner (bench/README.md). Where TF has no XLA:CPU (tensorflow-tpu) "
                        "host steps run on TF's kernels whatever this says.",
                        choices=JIT_MODES),
    "nonfinite": flag("On a NaN/Inf loss or gradient: stop with an error (the update is not "
                      "applied; the last checkpoint stays good), or skip that step and count it.",
                      choices=("stop", "skip")),
}

# --init_checkpoint means the same in pretrain.py and finetune.py: one loading route
# (funnel_tf/checkpoints/init_checkpoint.py).
INIT_CHECKPOINT_HELP = (
    "Initialise a fresh run from a checkpoint of any kind: a funnel_tf directory (save_pretrained "
    "or a finetune model_dir), a HuggingFace directory (config.json + weights), an original-release "
    "directory (net_config.json + model.ckpt), a TF training checkpoint of pretrain.py or "
    "finetune.py, or a *.weights.h5 file. The backbone always, heads where the checkpoint has "
    "them; a checkpoint that does not fit the config is refused with the tensors named.")


# ------------------------------------------------------------------------------- absl side
def _kind(spec: FlagSpec, annotation) -> str:
    """The absl flag kind of a field: declared, else from its type (Optional[X] -> X)."""
    if spec.kind:
        return spec.kind
    if spec.choices:
        return "enum"
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if typing.get_origin(annotation) is typing.Union and len(args) == 1 else annotation
    origin = typing.get_origin(base) or base
    kind = {bool: "bool", int: "integer", float: "float", str: "string", list: "list"}.get(origin)
    if kind is None:
        raise TypeError(f"no flag kind for a field of type {annotation}; declare kind=")
    return kind


def _define(name: str, kind: str, default, spec: FlagSpec, flag_values) -> None:
    from absl import flags

    if kind == "enum":
        flags.DEFINE_enum(name, default, list(spec.choices), spec.help, flag_values=flag_values)
        return
    define = {"string": flags.DEFINE_string, "integer": flags.DEFINE_integer,
              "float": flags.DEFINE_float, "bool": flags.DEFINE_bool, "list": flags.DEFINE_list,
              "multi_string": flags.DEFINE_multi_string}[kind]
    define(name, default, spec.help, flag_values=flag_values)


def _specs(cls) -> Dict[str, Tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def _field_default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None  # a required field: its flag starts unset


def flag_names(cls) -> Tuple[str, ...]:
    """Every flag `define_flags(cls)` defines (deprecated spellings not included)."""
    names = []
    for field, _ in _specs(cls).values():
        if "flag" in field.metadata:
            names.append(field.name)
        elif "flag_group" in field.metadata:
            names.extend(field.metadata["flag_group"][0])
    return tuple(names)


def define_flags(cls, flag_values=None) -> None:
    """Defines an absl flag for every field of `cls` that declares one (and for every member of
    its flag groups), plus each deprecated spelling as an alias (`warn_deprecated` reports use)."""
    from absl import flags

    flags.disclaim_key_flags()  # the flags belong to (and --help lists them under) the caller
    flag_values = flags.FLAGS if flag_values is None else flag_values
    for field, annotation in _specs(cls).values():
        if "flag" in field.metadata:
            spec = field.metadata["flag"]
            default = _field_default(field) if spec.default is _UNSET else spec.default
            _define(field.name, _kind(spec, annotation), default, spec, flag_values)
            members = {field.name: spec}
        elif "flag_group" in field.metadata:
            members = field.metadata["flag_group"][0]
            for name, spec in members.items():
                _define(name, spec.kind, spec.default, spec, flag_values)
        else:
            continue
        for name, spec in members.items():
            for old in spec.deprecated:
                flags.DEFINE_alias(old, name, flag_values=flag_values)
                flag_values[old].help = f"Deprecated spelling of --{name} (still accepted; warns)."


def warn_deprecated(cls, flag_values=None) -> None:
    """One warning per deprecated spelling given on the command line (or in a --flagfile)."""
    from absl import flags, logging

    flag_values = flags.FLAGS if flag_values is None else flag_values
    for field, _ in _specs(cls).values():
        members = ({field.name: field.metadata["flag"]} if "flag" in field.metadata else
                   field.metadata.get("flag_group", ({}, None))[0])
        for name, spec in members.items():
            for old in spec.deprecated:
                if flag_values[old].present:
                    logging.warning("--%s is deprecated: use --%s (same meaning)", old, name)


def args_from_flags(cls, flag_values=None, **extra):
    """An instance of `cls` from the parsed flags: each flagged field takes its flag's value
    (through `from_flag`), each group field its `assemble`d value; `extra` sets the rest (or
    overrides). Deprecated spellings that were used are warned about once here."""
    from absl import flags

    f = flags.FLAGS if flag_values is None else flag_values
    warn_deprecated(cls, f)
    values = {}
    for field, _ in _specs(cls).values():
        if "flag" in field.metadata:
            spec = field.metadata["flag"]
            value = f[field.name].value
            if isinstance(value, list):
                value = list(value)
            values[field.name] = spec.from_flag(value, f) if spec.from_flag else value
        elif "flag_group" in field.metadata:
            members, assemble = field.metadata["flag_group"]
            values[field.name] = assemble({name: f[name].value for name in members}, f)
    values.update(extra)
    return cls(**values)
