"""`run_finetuning(FinetuneArgs)`: one finetuning run as a library call (finetune.py and the
`funnel-finetune` console script only map flags onto it), beside `run_pretraining` in
training/pretraining_run.py. Everything is checked before model_dir is locked and written; the
work itself is `tasks/runner.FinetuneRunner`'s."""

from __future__ import annotations

import dataclasses
import os
from typing import List

import tensorflow as tf
from absl import logging

from funnel_tf import storage
from funnel_tf.tasks.base import TaskError, atomic_write_json
from funnel_tf.checkpoints.resolver import BEST_DIR, has_best
from funnel_tf.finetuning.initialization import find_vocab, resolve_config, resolve_init
from funnel_tf.engine.preemption import sigterm_interrupts
from funnel_tf.finetuning.runner import TASK_JSON, FinetuneRunner, RunConfig, _fmt
from funnel_tf.engine import run_record
from funnel_tf.engine.strategy import strategy_info
from funnel_tf.finetuning.args import FinetuneArgs


def run_finetuning(args: FinetuneArgs) -> dict:
    """Validate everything, then train / evaluate / predict / export as asked.

    Returns {"task", "hparams", "init", "train", "eval", "best", "predictions", "export",
    "preempted"}. Order matters for "nothing half-written": the task, the flags, the config, the
    vocab, where outputs go, what run a resumed model_dir holds (run.json: another task or
    recipe is refused), every data file, the init checkpoint and the trainer are checked
    before model_dir is locked (`ModelDirLock`, held for the whole run) and the first file is
    written. A preempted run (SIGTERM, Ctrl-C during training) returns with "preempted": True
    after saving its checkpoint, without predicting or exporting; SIGTERM outside the training
    loop raises `RunInterrupted` (a KeyboardInterrupt), which cleans up what was being written.
    """
    from funnel_tf.tasks import get_task
    from funnel_tf.finetuning.outputs import check_output_dirs
    from funnel_tf.text.wordpiece import shared_tokenizer
    from funnel_tf.engine.run_lock import ModelDirLock
    from funnel_tf.engine import precision as run_precision
    from funnel_tf.engine.strategy import make_strategy

    if not (args.do_train or args.do_eval or args.do_predict or args.export_dir):
        raise TaskError("nothing to do: set --do_train, --do_eval, --do_predict or --export_dir")
    from funnel_tf.engine.jax.backend import choose_backend
    jax_run = None
    if choose_backend(args.backend) == "jax":  # the JAX engine: its steps are run_jax.py's
        from funnel_tf.finetuning import run_jax as jax_run
        jax_run.check_args(args)
    run = RunConfig(model_dir=args.model_dir, **args.run)
    run.validate()
    task = get_task(args.task, files=args.files, csv_options=args.csv_options)
    if jax_run:
        jax_run.check_task(task)
        jax_run.check_model_dir(args.model_dir)
    if args.tfds_data_dir:
        if not hasattr(task, "use_tfds"):
            raise TaskError(f"--tfds_data_dir is supported for the GLUE tasks, not {task.name}")
        task.use_tfds(args.tfds_data_dir)
    hp = task.default_hparams().replace(**args.hparams)
    hp.check_for_task(task.defaults_key or task.name)
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
    # --init_checkpoint resolved once, here (nothing written yet); without it, evaluating /
    # predicting / exporting takes the run's own best/.
    init = resolve_init(args.init_checkpoint) or (
        resolve_init(args.model_dir, "--model_dir") if not args.do_train and has_best(args.model_dir)
        else None)
    config = resolve_config(args.config, init)
    vocab = args.vocab_file or find_vocab(init) or find_vocab(os.path.join(args.model_dir, BEST_DIR))
    if not vocab:
        raise TaskError("no vocabulary: pass --vocab_file (BERT uncased vocab.txt for the "
                        "published checkpoints)")
    if not tf.io.gfile.exists(vocab):
        raise TaskError(f"--vocab_file {vocab} not found")
    # Before anything runs a TF op (the tokenizer's lookup tables do): MultiWorkerMirroredStrategy
    # can only configure its collective ops before TF's runtime starts.
    strategy = jax_run.strategy() if jax_run else make_strategy(
        args.strategy, tpu=args.tpu, zone=args.tpu_zone, project=args.gcp_project)
    tokenizer = shared_tokenizer(vocab)
    resolved = jax_run.resolve(args.precision) if jax_run else run_precision.resolve(
        args.precision, run.jit_compile, strategy_info(strategy).kind)
    run_precision.set_precision(resolved.precision)
    precision = resolved.precision
    run = dataclasses.replace(run, jit_compile=resolved.jit_compile)  # resolved once, here
    record = finetune_record(task, hp, config, vocab, precision, args)
    notes = _check_resume(args, record, jax_engine=jax_run is not None)
    import keras

    keras.utils.set_random_seed(run.seed)  # head/model init, dropout
    runner = (jax_run.JaxFinetuneRunner if jax_run else FinetuneRunner)(
        task, hp, config, tokenizer, strategy, run)
    runner.record = record if args.do_train else None
    for note in notes:
        logging.info("%s", note)
    runner.load(args.data_dir, args.do_train, args.do_eval, args.do_predict, args.predict_splits)
    summary = {"task": task.name, "hparams": dataclasses.asdict(hp), "model_dir": args.model_dir,
               "preempted": False}
    summary["init"] = runner.initialize(init)
    if args.do_train:
        runner.prepare_training(do_eval=args.do_eval)
    with ModelDirLock(args.model_dir, enabled=runner.info.is_chief), sigterm_interrupts():
        return _run(runner, args, summary)


# What a resume may not change (run_record.py); the other hparams and run knobs may change and
# are logged. Without --do_train only what the saved model is (task, config, vocab) is compared.
DEFINING_HPARAMS = ("batch_size", "learning_rate", "warmup_ratio", "warmup_steps", "layer_decay",
                    "weight_decay", "max_seq_length", "doc_stride", "max_query_length",
                    "max_qa_length")
CHANGEABLE_RUN = ("steps_per_loop", "log_every", "eval_every", "save_every", "keep_checkpoints",
                  "jit_compile", "skip_malformed", "nonfinite", "max_eval_examples")
MODEL_ONLY = ("task", "task_options", "config", "vocab")


def finetune_record(task, hp, config, vocab: str, precision: str, args: FinetuneArgs) -> dict:
    """This run's identity (run.json in model_dir): task, model, vocab content, the recipe's
    defining hparams, seed, precision; train length, cadences and paths may change."""
    model = config.to_dict()
    model.pop("init_scheme", None)
    hparams = dataclasses.asdict(hp)
    run = RunConfig(model_dir=args.model_dir, **args.run)
    defining = dict(task=task.name, task_options=args.csv_options, config=model,
                    vocab=run_record.vocab_fingerprint(vocab), precision=precision,
                    seed=run.seed, max_train_examples=run.max_train_examples,
                    **{k: hparams[k] for k in DEFINING_HPARAMS})
    changeable = dict({k: v for k, v in hparams.items()
                       if k not in DEFINING_HPARAMS and k != "source"},
                      **{k: getattr(run, k) for k in CHANGEABLE_RUN}, strategy=args.strategy,
                      data_dir=args.data_dir, files=args.files,
                      init_checkpoint=args.init_checkpoint)
    return run_record.make_record("finetuning", defining, changeable)


def _saved_record(model_dir: str):
    """(record, file) of the run in model_dir: run.json, or for a folder written before it
    existed the task.json beside its checkpoints."""
    return run_record.saved_record(model_dir, TASK_JSON, _record_from_task_json)


def _record_from_task_json(info: dict) -> dict:
    """The defining settings a task.json (written before run.json existed) holds."""
    hparams = info.get("hparams") or {}
    defining = {"task": info["task"], **{k: hparams[k] for k in DEFINING_HPARAMS if k in hparams}}
    if isinstance(info.get("config"), dict):
        defining["config"] = {k: v for k, v in info["config"].items() if k != "init_scheme"}
    if info.get("vocab_file") and tf.io.gfile.exists(info["vocab_file"]):
        defining["vocab"] = run_record.vocab_fingerprint(info["vocab_file"])
    return run_record.make_record("finetuning", defining, {})


def _check_resume(args: FinetuneArgs, record: dict, jax_engine: bool = False) -> List[str]:
    """Refuse (one line, nothing written) a model_dir holding checkpoints or best/ of another run;
    return log lines for what changed safely."""
    model_dir = args.model_dir
    has_checkpoint = tf.io.gfile.isdir(os.path.join(model_dir, "checkpoints")) and \
        tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")) is not None
    from funnel_tf.finetuning.run_jax import has_checkpoint as has_jax_checkpoint

    jax_checkpoint = has_jax_checkpoint(model_dir)
    if jax_checkpoint and args.do_train and not jax_engine:
        raise TaskError(f"--model_dir {model_dir} holds JAX-engine checkpoints; resume it with "
                        f"--backend=jax or use a new --model_dir")
    has_checkpoint = has_checkpoint or jax_checkpoint
    if not (has_checkpoint or has_best(model_dir)):
        return []
    if not args.do_train:
        record = dict(record, defining={k: v for k, v in record["defining"].items()
                                        if k in MODEL_ONLY}, changeable={})
    saved, source = _saved_record(model_dir)
    notes = run_record.check_resume(model_dir, record, saved, source)
    return notes if args.do_train else []


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
