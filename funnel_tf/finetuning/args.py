"""`FinetuneArgs`: everything a finetuning run takes; finetune.py's flags are generated from it.

Each field declares its flag (`funnel_tf.flags_from_args.flag`); the dict fields (`files`,
`hparams`, `run`, `csv_options`) declare the flags they are assembled from (`flag_group`). No
TensorFlow here: `finetune.py --help` and flag errors stay fast.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

from funnel_tf.flags_from_args import (ENGINE_FLAGS, INIT_CHECKPOINT_HELP, FlagSpec, flag,
                                       flag_group, with_help)

flag_default_unset = object()


def _f(default, help_text: str, flag_default=flag_default_unset, **kwargs):
    """A field with a default and its flag; `flag_default` when the flag's differs (do_train)."""
    if flag_default is not flag_default_unset:
        kwargs["default"] = flag_default
    return dataclasses.field(default=default, metadata=flag(help_text, **kwargs))


def _string(help_text: str) -> FlagSpec:
    return FlagSpec(help_text, kind="string", default=None)


def _column(value):
    """A column flag: an int index when it looks like one, else a header name."""
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


_FILES = {"train_file": _string("Use this file (or RACE split folder) as the train split instead of "
                                "the task's standard name (relative paths are under --data_dir)."),
          "dev_file": _string("Same for the evaluation split."),
          "test_file": _string("Same for the prediction split.")}


def _files(values, flags) -> Dict[str, str]:
    """{"train_file": p, ...} -> {"train": p, ...}, the splits given only."""
    return {name[:-len("_file")]: path for name, path in values.items() if path}


_HPARAMS = {
    "batch_size": FlagSpec("Global training batch size (default: the task's recipe).", "integer",
                           default=None),
    "eval_batch_size": FlagSpec("Global eval batch size (default: batch_size).", "integer",
                                default=None),
    "learning_rate": FlagSpec("Peak learning rate (default: the task's recipe).", "float", default=None),
    "epochs": FlagSpec("Training epochs (overrides the recipe's length).", "float", default=None),
    "train_steps": FlagSpec("Training steps (overrides the recipe's length).", "integer", default=None),
    "warmup_ratio": FlagSpec("Fraction of steps of linear warmup (default 0.1).", "float",
                             default=None),
    "warmup_steps": FlagSpec("Warmup steps (overrides --warmup_ratio).", "integer", default=None),
    "layer_decay": FlagSpec("Layer-wise learning-rate decay (default: 0.75 SQuAD, 1.0 otherwise).",
                            "float", default=None),
    "weight_decay": FlagSpec("AdamW decoupled weight decay (default 0.01).", "float", default=None),
    "max_seq_length": FlagSpec("Tokens per sequence (default: 128 GLUE, 512 IMDB/text "
                               "classification/SQuAD/RACE).", "integer", default=None,
                               deprecated=("seq_len",)),
    "doc_stride": FlagSpec("SQuAD: tokens between window starts (default 128).", "integer",
                           default=None),
    "max_query_length": FlagSpec("SQuAD: question tokens kept (default 64).", "integer", default=None),
    "max_answer_length": FlagSpec("SQuAD: longest answer in tokens (default 64).", "integer",
                                  default=None),
    "max_qa_length": FlagSpec("RACE: question+option tokens kept (default 128).", "integer",
                              default=None),
}

_RUN = {
    "seed": FlagSpec("Seed of the initialisation of new weights, dropout and the training data "
                     "order.", "integer", default=0),
    "steps_per_loop": FlagSpec("Training steps per host call.", "integer", default=100),
    "log_every": FlagSpec("Steps between progress lines.", "integer", default=100),
    "eval_every": FlagSpec("Steps between evaluations (0 = once per epoch, -1 = only at the end).",
                           "integer", default=0),
    "save_every": FlagSpec("Steps between training checkpoints for resuming (0 = --eval_every, or "
                           "about once per epoch).", "integer", default=0),
    "skip_malformed": FlagSpec("Skip (and count) malformed rows instead of stopping with an error "
                               "naming the file and line.", "bool", default=False),
    "nonfinite": dataclasses.replace(ENGINE_FLAGS["nonfinite"]["flag"], kind="enum", default="stop"),
    "max_train_examples": FlagSpec("Use only the first N training examples (0 = all).", "integer",
                                   default=0),
    "max_eval_examples": FlagSpec("Use only the first N examples of each eval / predict split "
                                  "(0 = all).", "integer", default=0),
    "feature_records": FlagSpec("Tokenize once into TFRecord files and feed those (core TF ops "
                                "only, as a TPU pod's hosts need): auto (on TPU and multi-worker "
                                "strategies), always, never.", "string", default="auto"),
    "feature_records_dir": _string("Where the feature records are cached (default "
                                   "<model_dir>/feature_records; gs:// on a TPU pod)."),
    "jit_compile": dataclasses.replace(ENGINE_FLAGS["jit_compile"]["flag"], kind="enum",
                                       default="auto"),
    "keep_checkpoints": FlagSpec("Training checkpoints to keep.", "integer", default=2),
}


def _run(values, flags) -> Dict[str, object]:
    """RunConfig overrides; --jit_compile auto/true/false -> None/True/False."""
    return {**values, "jit_compile": {"true": True, "false": False}.get(values["jit_compile"])}


_CSV = {
    "text_a_column": _string("csv task: column (index or header name) of the text."),
    "text_b_column": _string("csv task: column of the second text of a pair."),
    "label_column": _string("csv task: column of the label."),
    "id_column": _string("csv task: column of an example id (default: line number)."),
    "label_names": FlagSpec("csv task: label values in id order (default: the sorted labels of "
                            "the train file).", "list", default=None),
    "regression": FlagSpec("csv task: the label is a real number (1 output, MSE).", "bool",
                           default=False),
    "has_header": FlagSpec("csv task: the files start with a header line.", "bool", default=True),
    "delimiter": _string("csv task: field separator (default: tab for .tsv, comma otherwise)."),
    "clean_text": FlagSpec("csv task: apply the original's web-text cleaning (<br />, &quot;, ...).",
                           "bool", default=False),
}


def _csv_options(values, flags) -> Optional[Dict[str, object]]:
    """The csv task's options (None for every other task); column flags become int indices
    when they look like one."""
    if not (flags.task and flags.task.lower() == "csv"):
        return None
    options = {k: (_column(v) if k.endswith("_column") else v) for k, v in values.items()
               if k != "clean_text"}
    options["clean"] = values["clean_text"]
    return options


@dataclasses.dataclass
class FinetuneArgs:
    """Everything a finetuning run needs, as plain values (finetune.py's flags map 1:1)."""

    task: str = dataclasses.field(metadata=flag(
        "Task name: cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte, wnli, ax (predict-only, needs "
        "an MNLI-finetuned --init_checkpoint), imdb, ag_news, dbpedia, yelp2, yelp5, amazon2, "
        "amazon5, csv (any labelled CSV/TSV), squad_v1.1, squad_v2.0, race."))
    model_dir: str = dataclasses.field(metadata=flag(
        "Output folder: checkpoints, progress, eval results, the best model (best/), predictions. "
        "Re-running with the same folder resumes; one run at a time holds it (RUN_LOCK)."))
    data_dir: Optional[str] = _f(
        None, "Folder with the task's original files: the GLUE root (or the task folder), the "
        "text-classification dataset folder, the SQuAD folder ({train,dev}-v1.1.json / "
        "-v2.0.json) or the RACE root.")
    tfds_data_dir: Optional[str] = _f(  # GLUE from prepared TFDS
        None, "GLUE tasks: read the splits from an already prepared TFDS glue/<task> under this "
        "folder instead of the TSVs (nothing is downloaded).")
    files: Dict[str, str] = dataclasses.field(  # split -> path overrides
        default_factory=dict, metadata=flag_group(_FILES, _files))
    predict_splits: Optional[List[str]] = _f(
        None, "Splits to predict with --do_predict (default: the task's test splits, e.g. "
        "test_matched,test_mismatched for MNLI; dev for SQuAD). Use 'dev' to write "
        "submission-format files for the dev set.")
    init_checkpoint: Optional[str] = _f(None, INIT_CHECKPOINT_HELP)
    config: Optional[str] = _f(None, "Model config: a name from configs/ (tiny, small, ...) or a "
                               "JSON path. Default: the init checkpoint's own config.")
    vocab_file: Optional[str] = _f(None, "WordPiece vocab.txt (default: the one next to "
                                   "--init_checkpoint).", deprecated=("vocab",))
    do_train: bool = _f(True, "Train on the train split.", flag_default=False)
    do_eval: bool = _f(True, "Evaluate on the dev split(s): every epoch (or --eval_every steps) "
                       "while training, keeping the best model by the task's main metric; without "
                       "--do_train, evaluate the initial / best model once.", flag_default=False)
    do_predict: bool = _f(False, "Write prediction files (GLUE submission TSVs, SQuAD "
                          "predictions.json + null_odds.json, RACE answers) with the best model.")
    predictions_dir: Optional[str] = _f(None, "Where --do_predict writes (default: "
                                        "<model_dir>/predictions).")
    export_dir: Optional[str] = _f(
        None, "Write a SavedModel with in-graph tokenization here (raw text in, predictions out); "
        "a folder of its own, outside --model_dir.")
    overwrite_export: bool = _f(False, "Replace an existing --export_dir, only if it holds a "
                                "SavedModel (an earlier export); anything else is refused.")
    strategy: str = dataclasses.field(default="default", metadata=with_help(
        ENGINE_FLAGS["strategy"], default=None,
        from_flag=lambda value, flags: value or ("tpu" if flags.tpu else "default")))
    tpu: Optional[str] = dataclasses.field(default=None, metadata=ENGINE_FLAGS["tpu"])
    tpu_zone: Optional[str] = dataclasses.field(default=None, metadata=ENGINE_FLAGS["tpu_zone"])
    gcp_project: Optional[str] = dataclasses.field(default=None, metadata=ENGINE_FLAGS["gcp_project"])
    precision: str = dataclasses.field(  # auto: mixed_bfloat16 on TPU, float32 elsewhere
        default="auto", metadata=ENGINE_FLAGS["precision"])
    backend: Optional[str] = _f(
        None, "Training engine (the Keras backend): tensorflow (tf.distribute strategies; every "
        "task) or jax (data parallel over every JAX device; GLUE, text classification and csv "
        "only: SQuAD and RACE are refused for now, and --export_dir runs on tensorflow). Unset: "
        "KERAS_BACKEND, else tensorflow; when both are set they must agree.",
        choices=("tensorflow", "jax"))
    hparams: Dict[str, object] = dataclasses.field(  # Hparams overrides
        default_factory=dict, metadata=flag_group(_HPARAMS, lambda values, flags: dict(values)))
    run: Dict[str, object] = dataclasses.field(  # RunConfig overrides
        default_factory=dict, metadata=flag_group(_RUN, _run))
    csv_options: Optional[Dict[str, object]] = dataclasses.field(
        default=None, metadata=flag_group(_CSV, _csv_options))


__all__ = ["FinetuneArgs"]
