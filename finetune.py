r"""Finetune a Funnel-Transformer on GLUE, text classification, SQuAD or RACE.

    python finetune.py --task=sst-2 --data_dir=glue_data --init_checkpoint=funnel-small \
        --vocab_file=vocab.txt --model_dir=runs/sst2 --do_train --do_eval --do_predict \
        --export_dir=exports/sst2

Defaults per task come from the paper's recipes (funnel_tf/tasks/defaults.py); every flag left
unset keeps the recipe's value. `--helpfull` explains every flag. The work itself is done by
`funnel_tf.finetuning.run.run_finetuning`; this file only maps flags onto it.

Exit status: 0 done; 2 a user error (one line on stderr, nothing written); 75 preempted or
interrupted (SIGTERM, Ctrl-C): the checkpoint is saved, nothing was predicted or exported, and
rerunning the same command resumes and finishes. Every path may be on gs://.
"""

from __future__ import annotations

import sys

from absl import app, flags

from funnel_tf import cli
from funnel_tf.cli import (absl_flags_parser, define_engine_flags, main_with_user_errors,
                           program_name)
from funnel_tf.logs import quiet_tensorflow

FLAGS = flags.FLAGS

# ----------------------------------------------------------------------------- task and data
flags.DEFINE_string("task", None, "Task name: cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte, "
                    "wnli, ax (predict-only, needs an MNLI-finetuned --init_checkpoint), imdb, "
                    "ag_news, dbpedia, yelp2, yelp5, amazon2, amazon5, csv (any labelled "
                    "CSV/TSV), squad_v1.1, squad_v2.0, race.")
flags.DEFINE_string("data_dir", None, "Folder with the task's original files: the GLUE root (or "
                    "the task folder), the text-classification dataset folder, the SQuAD folder "
                    "({train,dev}-v1.1.json / -v2.0.json) or the RACE root.")
flags.DEFINE_string("tfds_data_dir", None, "GLUE tasks: read the splits from an already "
                    "prepared TFDS glue/<task> under this folder instead of the TSVs (nothing "
                    "is downloaded).")
flags.DEFINE_string("train_file", None, "Use this file (or RACE split folder) as the train split "
                    "instead of the task's standard name (relative paths are under --data_dir).")
flags.DEFINE_string("dev_file", None, "Same for the evaluation split.")
flags.DEFINE_string("test_file", None, "Same for the prediction split.")
flags.DEFINE_list("predict_splits", None, "Splits to predict with --do_predict (default: the "
                  "task's test splits, e.g. test_matched,test_mismatched for MNLI; dev for SQuAD). "
                  "Use 'dev' to write submission-format files for the dev set.")
flags.DEFINE_bool("skip_malformed", False, "Skip (and count) malformed rows instead of stopping "
                  "with an error naming the file and line.")
flags.DEFINE_integer("max_train_examples", 0, "Use only the first N training examples (0 = all).")
flags.DEFINE_string("feature_records", "auto", "Tokenize once into TFRecord files and feed those "
                    "(core TF ops only, as a TPU pod's hosts need): auto (on TPU and multi-worker "
                    "strategies), always, never.")
flags.DEFINE_string("feature_records_dir", None, "Where the feature records are cached (default "
                    "<model_dir>/feature_records; gs:// on a TPU pod).")
flags.DEFINE_integer("max_eval_examples", 0, "Use only the first N examples of each eval / "
                     "predict split (0 = all).")

# ----------------------------------------------------------------------------- csv task
flags.DEFINE_string("text_a_column", None, "csv task: column (index or header name) of the text.")
flags.DEFINE_string("text_b_column", None, "csv task: column of the second text of a pair.")
flags.DEFINE_string("label_column", None, "csv task: column of the label.")
flags.DEFINE_string("id_column", None, "csv task: column of an example id (default: line number).")
flags.DEFINE_list("label_names", None, "csv task: label values in id order (default: the sorted "
                  "labels of the train file).")
flags.DEFINE_bool("regression", False, "csv task: the label is a real number (1 output, MSE).")
flags.DEFINE_bool("has_header", True, "csv task: the files start with a header line.")
flags.DEFINE_string("delimiter", None, "csv task: field separator (default: tab for .tsv, comma "
                    "otherwise).")
flags.DEFINE_bool("clean_text", False, "csv task: apply the original's web-text cleaning "
                  "(<br />, &quot;, ...).")

# ----------------------------------------------------------------------------- model
flags.DEFINE_string("init_checkpoint", None, cli.INIT_CHECKPOINT_HELP)
flags.DEFINE_string("config", None, "Model config: a name from configs/ (tiny, small, ...) or a "
                    "JSON path. Default: the init checkpoint's own config.")
flags.DEFINE_string("vocab_file", None, "WordPiece vocab.txt (default: the one next to "
                    "--init_checkpoint).")

# ----------------------------------------------------------------------------- what to do
flags.DEFINE_string("model_dir", None, "Output folder: checkpoints, progress, eval results, the "
                    "best model (best/), predictions. Re-running with the same folder resumes; "
                    "one run at a time holds it (RUN_LOCK).")
flags.DEFINE_bool("do_train", False, "Train on the train split.")
flags.DEFINE_bool("do_eval", False, "Evaluate on the dev split(s): every epoch (or --eval_every "
                  "steps) while training, keeping the best model by the task's main metric; "
                  "without --do_train, evaluate the initial / best model once.")
flags.DEFINE_bool("do_predict", False, "Write prediction files (GLUE submission TSVs, SQuAD "
                  "predictions.json + null_odds.json, RACE answers) with the best model.")
flags.DEFINE_string("predictions_dir", None, "Where --do_predict writes (default: "
                    "<model_dir>/predictions).")
flags.DEFINE_string("export_dir", None, "Write a SavedModel with in-graph tokenization here "
                    "(raw text in, predictions out); a folder of its own, outside --model_dir.")
flags.DEFINE_bool("overwrite_export", False, "Replace an existing --export_dir, only if it holds "
                  "a SavedModel (an earlier export); anything else is refused.")

# ----------------------------------------------------------------------------- hyper-parameters
flags.DEFINE_integer("batch_size", None, "Global training batch size (default: the task's recipe).")
flags.DEFINE_integer("eval_batch_size", None, "Global eval batch size (default: batch_size).")
flags.DEFINE_float("learning_rate", None, "Peak learning rate (default: the task's recipe).")
flags.DEFINE_float("epochs", None, "Training epochs (overrides the recipe's length).")
flags.DEFINE_integer("train_steps", None, "Training steps (overrides the recipe's length).")
flags.DEFINE_float("warmup_ratio", None, "Fraction of steps of linear warmup (default 0.1).")
flags.DEFINE_integer("warmup_steps", None, "Warmup steps (overrides --warmup_ratio).")
flags.DEFINE_float("layer_decay", None, "Layer-wise learning-rate decay (default: 0.75 SQuAD, "
                   "1.0 otherwise).")
flags.DEFINE_float("weight_decay", None, "AdamW decoupled weight decay (default 0.01).")
flags.DEFINE_integer("max_seq_length", None, "Tokens per sequence (default: 128 GLUE, 512 "
                     "IMDB/text classification/SQuAD/RACE).")
flags.DEFINE_integer("doc_stride", None, "SQuAD: tokens between window starts (default 128).")
flags.DEFINE_integer("max_query_length", None, "SQuAD: question tokens kept (default 64).")
flags.DEFINE_integer("max_answer_length", None, "SQuAD: longest answer in tokens (default 64).")
flags.DEFINE_integer("max_qa_length", None, "RACE: question+option tokens kept (default 128).")

# ----------------------------------------------------------------------------- engine
define_engine_flags()  # --tpu --tpu_zone --gcp_project --strategy --precision --jit_compile --nonfinite
flags.adopt_module_key_flags(cli)  # listed by --help as this script's own
flags.DEFINE_integer("eval_every", 0, "Steps between evaluations (0 = once per epoch, -1 = only "
                     "at the end).")
flags.DEFINE_integer("save_every", 0, "Steps between training checkpoints for resuming (0 = "
                     "--eval_every, or about once per epoch).")
flags.DEFINE_integer("steps_per_loop", 100, "Training steps per host call.")
flags.DEFINE_integer("log_every", 100, "Steps between progress lines.")
flags.DEFINE_integer("keep_checkpoints", 2, "Training checkpoints to keep.")
flags.DEFINE_integer("seed", 0, "Seed of the initialisation of new weights, dropout and the "
                     "training data order.")

# pretrain.py's names for the same things (both scripts accept both spellings).
flags.DEFINE_alias("vocab", "vocab_file")
flags.DEFINE_alias("seq_len", "max_seq_length")


def _column(value):
    """A column flag: an int index when it looks like one, else a header name."""
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


def args_from_flags(f=FLAGS):
    from funnel_tf.finetuning.run import FinetuneArgs

    hparams = {k: getattr(f, k) for k in (
        "batch_size", "eval_batch_size", "learning_rate", "epochs", "train_steps", "warmup_ratio",
        "warmup_steps", "layer_decay", "weight_decay", "max_seq_length", "doc_stride",
        "max_query_length", "max_answer_length", "max_qa_length")}
    run = {k: getattr(f, k) for k in (
        "seed", "steps_per_loop", "log_every", "eval_every", "save_every",
        "skip_malformed", "nonfinite", "max_train_examples", "max_eval_examples",
        "feature_records", "feature_records_dir")}
    run["jit_compile"] = {"true": True, "false": False}.get(f.jit_compile)
    run["keep_checkpoints"] = f.keep_checkpoints
    csv_options = None
    if f.task and f.task.lower() == "csv":
        csv_options = {"text_a_column": _column(f.text_a_column),
                       "label_column": _column(f.label_column),
                       "text_b_column": _column(f.text_b_column),
                       "id_column": _column(f.id_column), "label_names": f.label_names,
                       "regression": f.regression, "has_header": f.has_header,
                       "delimiter": f.delimiter, "clean": f.clean_text}
    files = {"train": f.train_file, "dev": f.dev_file, "test": f.test_file}
    return FinetuneArgs(
        task=f.task, model_dir=f.model_dir, data_dir=f.data_dir, tfds_data_dir=f.tfds_data_dir,
        files={k: v for k, v in files.items() if v}, predict_splits=f.predict_splits,
        init_checkpoint=f.init_checkpoint, config=f.config, vocab_file=f.vocab_file,
        do_train=f.do_train, do_eval=f.do_eval, do_predict=f.do_predict,
        predictions_dir=f.predictions_dir, export_dir=f.export_dir,
        overwrite_export=f.overwrite_export, strategy=f.strategy or ("tpu" if f.tpu else "default"), tpu=f.tpu,
        tpu_zone=f.tpu_zone, gcp_project=f.gcp_project, precision=f.precision,
        hparams=hparams, run=run, csv_options=csv_options)


EX_TEMPFAIL = 75  # preempted or interrupted: rerun with the same flags to resume (as pretrain.py)


@main_with_user_errors("finetune.py")
def main(argv):
    from funnel_tf.tasks.errors import TaskError

    if len(argv) > 1:  # the flags parser refuses these already; main() called directly too
        raise TaskError(f"unexpected arguments {argv[1:]}: flags are --name=value")
    from funnel_tf.finetuning.run import run_finetuning

    try:
        summary = run_finetuning(args_from_flags())
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM outside the training loop
        print(f"{program_name('finetune.py')}: interrupted ({e or 'Ctrl-C'}) before the run finished; rerun with "
              f"the same flags to resume from the last checkpoint", file=sys.stderr)
        return EX_TEMPFAIL
    from funnel_tf import json_text

    summary = {k: v for k, v in summary.items() if k != "hparams"}
    print(json_text.dumps(summary, indent=1, default=str))  # valid JSON: NaN -> null
    if summary.get("preempted"):
        train = summary.get("train", {})
        print(f"{program_name('finetune.py')}: preempted at step {train.get('step')} of {train.get('total_steps')} "
              f"(checkpoint saved; nothing predicted or exported); rerun with the same flags to "
              f"resume", file=sys.stderr)
        return EX_TEMPFAIL
    return 0


if __name__ == "__main__":
    quiet_tensorflow()  # before TF loads; keeps a TF_CPP_MIN_LOG_LEVEL the user set
    flags.mark_flags_as_required(["task", "model_dir"])
    app.run(main, flags_parser=absl_flags_parser("finetune.py", __doc__))
