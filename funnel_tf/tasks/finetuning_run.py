"""`run_finetuning(FinetuneArgs)`: one finetuning run as a library call (finetune.py and the
`funnel-finetune` console script only map flags onto it), beside `run_pretraining` in
training/pretraining_run.py. Everything is checked before model_dir is locked and written; the
work itself is `tasks/runner.FinetuneRunner`'s."""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

import tensorflow as tf
from absl import logging

from funnel_tf import storage
from funnel_tf.tasks.base import TaskError, atomic_write_json
from funnel_tf.tasks.initialization import BEST_DIR, find_vocab, has_best, resolve_config
from funnel_tf.tasks.interrupts import sigterm_interrupts
from funnel_tf.tasks.runner import FinetuneRunner, RunConfig, _fmt
from funnel_tf.training.strategy import strategy_info


@dataclasses.dataclass
class FinetuneArgs:
    """Everything a finetuning run needs, as plain values (finetune.py's flags map 1:1)."""

    task: str
    model_dir: str
    data_dir: Optional[str] = None
    tfds_data_dir: Optional[str] = None                               # GLUE from prepared TFDS
    files: Dict[str, str] = dataclasses.field(default_factory=dict)   # split -> path overrides
    predict_splits: Optional[List[str]] = None
    init_checkpoint: Optional[str] = None
    config: Optional[str] = None
    vocab_file: Optional[str] = None
    do_train: bool = True
    do_eval: bool = True
    do_predict: bool = False
    predictions_dir: Optional[str] = None
    export_dir: Optional[str] = None
    overwrite_export: bool = False
    strategy: str = "default"
    tpu: Optional[str] = None
    tpu_zone: Optional[str] = None
    gcp_project: Optional[str] = None
    precision: str = "auto"          # auto: mixed_bfloat16 on TPU, float32 elsewhere (as pretraining)
    hparams: Dict[str, object] = dataclasses.field(default_factory=dict)  # Hparams overrides
    run: Dict[str, object] = dataclasses.field(default_factory=dict)      # RunConfig overrides
    csv_options: Optional[Dict[str, object]] = None


def run_finetuning(args: FinetuneArgs) -> dict:
    """Validate everything, then train / evaluate / predict / export as asked.

    Returns {"task", "hparams", "init", "train", "eval", "best", "predictions", "export",
    "preempted"}. Order matters for "nothing half-written": the task, the flags, the config, the
    vocab, where outputs go, every data file, the init checkpoint and the trainer are checked
    before model_dir is locked (`ModelDirLock`, held for the whole run) and the first file is
    written. A preempted run (SIGTERM, Ctrl-C during training) returns with "preempted": True
    after saving its checkpoint, without predicting or exporting; SIGTERM outside the training
    loop raises `RunInterrupted` (a KeyboardInterrupt), which cleans up what was being written.
    """
    from funnel_tf.tasks import get_task
    from funnel_tf.tasks.outputs import check_output_dirs
    from funnel_tf.text.wordpiece import WordpieceTokenizer
    from funnel_tf.training.run_lock import ModelDirLock
    from funnel_tf.training.strategy import make_strategy, set_precision

    if not (args.do_train or args.do_eval or args.do_predict or args.export_dir):
        raise TaskError("nothing to do: set --do_train, --do_eval, --do_predict or --export_dir")
    run = RunConfig(model_dir=args.model_dir, **args.run)
    run.validate()
    task = get_task(args.task, files=args.files, csv_options=args.csv_options)
    if args.tfds_data_dir:
        if not hasattr(task, "use_tfds"):
            raise TaskError(f"--tfds_data_dir is supported for the GLUE tasks, not {task.name}")
        task.use_tfds(args.tfds_data_dir)
    hp = task.default_hparams().replace(**args.hparams)
    predictions_dir = args.predictions_dir or (
        os.path.join(args.model_dir, "predictions") if args.do_predict else None)
    check_output_dirs(args.model_dir, args.export_dir, predictions_dir,
                      args.overwrite_export, inputs=[
                          ("--data_dir", args.data_dir), ("--tfds_data_dir", args.tfds_data_dir),
                          ("--init_checkpoint", args.init_checkpoint),
                          ("--config", args.config if args.config and tf.io.gfile.exists(
                              args.config) else None), ("--vocab_file", args.vocab_file)]
                      + [(f"--{split}_file", path) for split, path in args.files.items()])
    if args.do_predict and args.do_train is False and args.do_eval is False \
            and not args.init_checkpoint and not has_best(args.model_dir):
        raise TaskError("--do_predict without training needs --init_checkpoint (a finetuned "
                        "model) or a model_dir holding best/")
    if args.export_dir and not args.do_train and not args.init_checkpoint \
            and not has_best(args.model_dir):
        raise TaskError("--export_dir without --do_train needs --init_checkpoint (a finetuned "
                        "model) or a model_dir holding best/; it would export an untrained "
                        "model")
    config = resolve_config(args.config, args.init_checkpoint or (
        args.model_dir if not args.do_train else None))
    vocab = args.vocab_file or find_vocab(args.init_checkpoint) or find_vocab(
        os.path.join(args.model_dir, BEST_DIR))
    if not vocab:
        raise TaskError("no vocabulary: pass --vocab_file (BERT uncased vocab.txt for the "
                        "published checkpoints)")
    if not tf.io.gfile.exists(vocab):
        raise TaskError(f"--vocab_file {vocab} not found")
    # Before anything runs a TF op (the tokenizer's lookup tables do): MultiWorkerMirroredStrategy
    # can only configure its collective ops before TF's runtime starts.
    strategy = make_strategy(args.strategy, tpu=args.tpu, zone=args.tpu_zone,
                             project=args.gcp_project)
    tokenizer = WordpieceTokenizer(vocab)
    precision = args.precision
    if precision == "auto":
        precision = "mixed_bfloat16" if strategy_info(strategy).kind == "tpu" else "float32"
    set_precision(precision)
    import keras

    keras.utils.set_random_seed(run.seed)  # head/model init, dropout
    runner = FinetuneRunner(task, hp, config, tokenizer, strategy, run)
    runner.load(args.data_dir, args.do_train, args.do_eval, args.do_predict, args.predict_splits)
    summary = {"task": task.name, "hparams": dataclasses.asdict(hp), "model_dir": args.model_dir,
               "preempted": False}
    init = args.init_checkpoint
    if not init and not args.do_train and has_best(args.model_dir):
        init = args.model_dir  # evaluate / predict / export the run's own best model
    summary["init"] = runner.initialize(init)
    if args.do_train:
        runner.prepare_training(do_eval=args.do_eval)
    with ModelDirLock(args.model_dir, enabled=runner.info.is_chief), sigterm_interrupts():
        return _run(runner, args, summary)


def _run(runner: FinetuneRunner, args: FinetuneArgs, summary: dict) -> dict:
    """The writing half of `run_finetuning`, under the model_dir lock."""
    task = runner.task
    if runner.info.is_chief:  # best/ copies a killed run (SIGKILL) left half-written
        for stale in tf.io.gfile.glob(os.path.join(args.model_dir, ".tmp_best_*")):
            storage.remove_tree(stale)
    if args.do_train:
        result = runner.train()
        summary["train"] = {"step": result["step"], "total_steps": runner.total_steps,
                            "final": result["history"][-1] if result["history"] else None}
        summary["evaluations"] = result["evaluations"]
        if result["preempted"]:
            summary["preempted"] = True
            logging.warning("preempted at step %d of %d: checkpoint %s saved; not evaluated at "
                            "the end, nothing predicted or exported. Rerun with the same flags "
                            "to resume and finish.", result["step"], runner.total_steps,
                            result["checkpoint"])
            return summary
        if args.do_eval and runner.restore_best():
            summary["best"] = runner.best
        elif runner.info.is_chief:
            runner.save_model(os.path.join(args.model_dir, BEST_DIR))  # the last model
    elif args.do_eval:
        metrics = runner.evaluate()
        summary["eval"] = metrics
        logging.info("eval: %s", _fmt(metrics))
        if runner.info.is_chief:
            atomic_write_json(os.path.join(args.model_dir, "eval_only_results.json"), metrics)
    if args.do_predict:
        out_dir = args.predictions_dir or os.path.join(args.model_dir, "predictions")
        summary["predictions"] = runner.predict(out_dir)
    if args.export_dir:
        summary["export"] = runner.export(args.export_dir, overwrite=args.overwrite_export)
        logging.info("exported the %s model with in-graph tokenization to %s", task.name,
                     args.export_dir)
    return summary
