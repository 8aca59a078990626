"""A finetuning run: load and validate the task's data, build and initialise the model, train with
the shared engine (engine.loop.Trainer: strategy, jit-compiled custom loop, AdamW + warmup/decay
+ layer-wise LR decay, checkpoints, progress), evaluate every epoch or N steps (an
engine.actions.Evaluate action of the loop) keeping the best model by the task's main metric
(engine.actions.KeepBest), predict (finetuning/predictor.py), export.

Files under `model_dir`:
  checkpoints/            training checkpoints (exact resume; the engine's)
  metrics.jsonl, train/   training progress (the engine's)
  eval_results.jsonl      one record per evaluation: step, epoch, metrics
  best/                   the best model so far (native save_pretrained format + task.json +
                          vocab.txt), usable as --init_checkpoint and for export
  best_result.json        step and metrics of best/
  run.json                what defines the run, compared on resume (engine/run_record.py)
  predictions/            prediction files (--do_predict)
  RUN_LOCK                held while a run uses the folder (engine/run_lock.py)

Every path may be on any filesystem tf.io.gfile knows (gs:// on pods). A run that is preempted
(SIGTERM, Ctrl-C) saves a checkpoint and returns `preempted=True` without the final evaluation,
predictions or export; rerunning it resumes and does them. `finetuning/run.run_finetuning`
checks the arguments and drives it (`finetune.py` maps flags onto that).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from funnel_tf import json_text, storage
from funnel_tf.engine.progress import evaluation_plan
from funnel_tf.config import FunnelConfig
from funnel_tf.tasks.base import (EvalData, Task, TaskError, atomic_write_json,
                                  atomic_write_text, feature_records_for)
from funnel_tf.tasks.defaults import Hparams
from funnel_tf.tasks.inputs import FinetuningInputSpec
from funnel_tf.finetuning.initialization import initialize_model
from funnel_tf.checkpoints.resolver import BEST_DIR, Resolved, has_best
from funnel_tf.engine.actions import NONFINITE_POLICIES, Evaluate, KeepBest
from funnel_tf.engine.inputs import task_dataset_fn
from funnel_tf.engine.loop import LoopConfig, Trainer
from funnel_tf.engine.optimization import WarmupLinearDecay, make_optimizer
from funnel_tf.engine.precision import resolve_jit
from funnel_tf.engine.strategy import strategy_info
from funnel_tf.finetuning.predictor import Predictor

EVAL_RESULTS = "eval_results.jsonl"
BEST_RESULT = "best_result.json"
TASK_JSON = "task.json"


@dataclasses.dataclass
class RunConfig:
    """Engine and bookkeeping knobs of a finetuning run (finetune.py maps flags onto them)."""

    model_dir: str
    seed: int = 0
    steps_per_loop: int = 100
    log_every: int = 100
    eval_every: int = 0            # steps between evaluations; 0 = once per epoch; <0 = at end only
    save_every: int = 0            # steps between training checkpoints; 0 = eval_every, or
                                   # about once per epoch
    keep_checkpoints: int = 2
    jit_compile: Optional[bool] = None   # None = auto: on for GPU/TPU (XLA compile time dominates
                                         # short CPU runs), off on CPU
    skip_malformed: bool = False
    nonfinite: str = "stop"
    max_train_examples: int = 0    # >0: use only the first N training examples (quick runs)
    max_eval_examples: int = 0     # >0: use only the first N examples of eval/predict splits
    feature_records: str = "auto"  # pre-tokenized TFRecord input: auto (TPU / multi-worker),
                                   # always, never (text/feature_records.py)
    feature_records_dir: Optional[str] = None  # their cache; default <model_dir>/feature_records

    def validate(self) -> None:
        """TaskError naming the first knob out of range (each is a finetune.py flag)."""
        if not self.model_dir:
            raise TaskError("--model_dir is required (the run's output folder)")
        for name, low in (("steps_per_loop", 1), ("log_every", 1), ("keep_checkpoints", 1),
                          ("save_every", 0), ("max_train_examples", 0),
                          ("max_eval_examples", 0)):
            if getattr(self, name) < low:
                raise TaskError(f"--{name} must be >= {low}, got {getattr(self, name)}")
        if not 0 <= self.seed < 2 ** 31 - 1:
            raise TaskError(f"--seed must be in [0, 2**31 - 1), got {self.seed}")
        from funnel_tf.text.feature_records import normalize_mode

        self.feature_records = normalize_mode(self.feature_records)
        if self.nonfinite not in NONFINITE_POLICIES:
            raise TaskError(f"--nonfinite must be one of {list(NONFINITE_POLICIES)}, "
                            f"got {self.nonfinite!r}")


# ---------------------------------------------------------------------------------- the run
class FinetuneRunner:
    """One finetuning run of `task` (see the module docstring for the files it writes)."""

    # The engine's trainer: (strategy, objective, optimizer_fn, dataset_fn, loop, actions=) ->
    # engine.loop.Trainer (finetuning/run_jax.py's runner trains on the JAX engine instead).
    trainer_type = Trainer

    def __init__(self, task: Task, hp: Hparams, config: FunnelConfig, tokenizer,
                 strategy: tf.distribute.Strategy, run: RunConfig):
        hp.validate()
        run.validate()
        if tokenizer.vocab_size != config.vocab_size:
            raise TaskError(f"the vocab ({tokenizer.vocab_path}) has {tokenizer.vocab_size} "
                            f"tokens but the model config has vocab_size {config.vocab_size}; "
                            f"use the vocab the checkpoint was trained with (--vocab_file)")
        config.check_seq_len(hp.max_seq_length)
        self.task, self.hp, self.config, self.tokenizer = task, hp, config, tokenizer
        self.strategy, self.run = strategy, run
        self.info = strategy_info(strategy)
        for name, batch in (("batch_size", hp.batch_size),
                            ("eval batch size", hp.global_eval_batch_size)):
            if batch % self.info.num_replicas:
                raise TaskError(f"{name} {batch} is not divisible by the "
                                f"{self.info.num_replicas} replicas")
        self.examples: Dict[str, object] = {}
        self.model = None
        self._eval_data: Dict[str, EvalData] = {}
        self._predictor: Optional[Predictor] = None
        self._keep_best = KeepBest(task.main_metric, os.path.join(run.model_dir, BEST_RESULT),
                                   self._save_best, is_chief=self.info.is_chief)
        self.train_rows = 0
        self.predict_splits: List[str] = []
        self._trainer: Optional[Trainer] = None
        self._do_eval = True
        self._evaluations: List[dict] = []
        self.record: Optional[dict] = None  # run.json (training/run_record.py), written by train()
        self.jit_compile = resolve_jit(run.jit_compile, self.info.kind)  # None: auto

    # ------------------------------------------------------------------ data
    def load(self, data_dir: Optional[str], do_train: bool, do_eval: bool, do_predict: bool,
             predict_splits: Optional[Sequence[str]] = None) -> Dict[str, object]:
        """Check that every needed file exists (one error listing all missing ones), then parse
        them all and check that each split can run (a train split of at least one global batch,
        evaluation and prediction splits of at least one example, features that can be built),
        before anything is built or written."""
        task = self.task
        splits: List[str] = []
        if do_train:
            if task.train_split is None:
                raise TaskError(f"task {task.name} has no training split (it is predict-only: "
                                f"pass --init_checkpoint of a finetuned model and --do_predict)")
            splits.append(task.train_split)
        if do_eval:
            if not task.eval_splits:
                raise TaskError(f"task {task.name} has no labelled evaluation split")
            splits += list(task.eval_splits)
        self.predict_splits = list(predict_splits or task.predict_splits) if do_predict else []
        splits += [s for s in self.predict_splits if s not in splits]
        task.check_files(data_dir, splits)
        for split in splits:
            t0 = time.time()
            examples = task.load(data_dir, split, skip_malformed=self.run.skip_malformed)
            limit = self.run.max_train_examples if split == task.train_split else \
                self.run.max_eval_examples
            if limit and limit < len(examples):
                examples = _head(examples, limit)
            self.examples[split] = examples
            logging.info("%s %s: %d examples (%s) in %.1fs", task.name, split, len(examples),
                         getattr(examples, "source", ""), time.time() - t0)
        eval_splits = [s for s in splits if s != task.train_split or s in self.predict_splits]
        for split in eval_splits:
            if len(self.examples[split]) == 0:
                kind = "evaluation" if split in task.eval_splits else "prediction"
                raise TaskError(f"task {task.name}: no {kind} rows in "
                                f"{self._where(split, self.run.max_eval_examples)}; the {split} "
                                f"split needs at least one example")
        if do_train:
            self.train_rows = task.num_train_rows(self.examples[task.train_split],
                                                  self.tokenizer, self.hp)
            self._check_train_rows()
        for split in eval_splits:
            self._data(split)  # builds its features now: their errors come before any write
        return self.examples

    def _where(self, split: str, limit: int) -> str:
        """The split's file, and why it may hold fewer rows than the file (for messages)."""
        examples = self.examples[split]
        notes = []
        skipped = int(getattr(examples, "num_skipped", 0) or 0)
        if skipped:
            notes.append(f"{skipped} malformed rows skipped")
        if limit:
            notes.append(f"limited to {limit} by --max_"
                         f"{'train' if split == self.task.train_split else 'eval'}_examples")
        where = getattr(examples, "source", "") or f"the {split} split"
        return where + (f" ({', '.join(notes)})" if notes else "")

    def _check_train_rows(self) -> None:
        """TaskError unless the train split fills at least one global batch (batches drop their
        remainder; fewer rows would repeat examples inside every batch)."""
        rows, batch, replicas = self.train_rows, self.hp.batch_size, self.info.num_replicas
        where = self._where(self.task.train_split, self.run.max_train_examples)
        if rows == 0:
            raise TaskError(f"task {self.task.name}: no training rows in {where}; training needs "
                            f"at least one global batch ({batch} rows, --batch_size)")
        if rows < batch:
            fit = rows - rows % replicas
            fix = (f"lower --batch_size to at most {fit}" + (
                f" (a multiple of the {replicas} replicas)" if replicas > 1 else "")
                + " or give more training data") if fit else "give more training data"
            raise TaskError(f"task {self.task.name}: {rows} training rows in {where}, fewer than "
                            f"one global batch of {batch} (--batch_size); {fix}")

    # ------------------------------------------------------------------ model
    def build(self):
        """The task model, built inside the strategy scope."""
        if self.model is None:
            with self.strategy.scope():
                self.model = self.task.build_model(self.config)
        return self.model

    def initialize(self, init: Optional[Resolved]) -> str:
        """Load the run's resolved --init_checkpoint (or its own best/) into the built model."""
        self.build()
        if not init:
            return "random initialisation"
        with self.strategy.scope():
            desc = initialize_model(self.model, self.task, init)
        logging.info("initialised from %s", desc)
        return desc

    # ------------------------------------------------------------------ train
    @property
    def total_steps(self) -> int:
        return self.hp.total_steps(self.train_rows)

    @property
    def steps_per_epoch(self) -> int:
        return self.hp.steps_per_epoch(self.train_rows)

    def eval_marks(self) -> List[int]:
        """Steps to evaluate at before the end: every `eval_every` steps, or at each epoch
        boundary (round(k * rows / batch)); the final step is always evaluated as well."""
        total = self.total_steps
        if self.run.eval_every < 0 or not self.task.eval_splits:
            return []
        if self.run.eval_every > 0:
            return list(range(self.run.eval_every, total, self.run.eval_every))
        per_epoch = self.train_rows / self.hp.batch_size
        if per_epoch <= 0:
            return []
        epochs = min(int(total / per_epoch), total)  # at most one mark per step
        marks = {int(round(k * per_epoch)) for k in range(1, epochs + 1)}
        # The last epoch boundary may round to a step or two before the end, which is evaluated
        # anyway: skip marks closer to the end than half an epoch.
        return sorted(m for m in marks if 0 < m and total - m >= per_epoch / 2)

    def prepare_training(self, do_eval: bool = True) -> Trainer:
        """Build the engine's trainer (model, optimizer, input pipeline): every check it makes
        comes before anything is written. `train()` then runs it."""
        if self.task.train_split not in self.examples:
            raise RuntimeError("call load(..., do_train=True) first")
        self.build()
        task, hp, run = self.task, self.hp, self.run
        total = self.total_steps
        warmup = hp.num_warmup_steps(total)
        marks = self.eval_marks() if do_eval else []
        save_every = run.save_every or (run.eval_every if run.eval_every > 0 else max(
            1, int(round(self.train_rows / hp.batch_size))))
        logging.info("%s: %d training rows, global batch %d, %d steps (%.2f epochs), warmup %d, "
                     "lr %g, layer decay %g; %s", task.name, self.train_rows,
                     hp.batch_size, total, total * hp.batch_size / max(self.train_rows, 1),
                     warmup, hp.learning_rate, hp.layer_decay,
                     evaluation_plan(marks) if do_eval else "no evaluation (no --do_eval)")
        seed = run.seed
        spec = FinetuningInputSpec(  # records None: tokenize in tf.data
            self.examples[task.train_split], self.tokenizer, hp, seed=seed,
            records=self._feature_records(task.train_split, "train"))

        def optimizer_fn(variables):
            schedule = WarmupLinearDecay(hp.learning_rate, warmup, total)
            return make_optimizer(variables, schedule, weight_decay=hp.weight_decay,
                                  layer_decay=hp.layer_decay)

        objective = task.bind(self.config, {"model": self.model})  # trains the model it evaluates
        loop = LoopConfig(train_steps=total, global_batch_size=hp.batch_size,
                          seq_len=task.tokens_per_row(hp), model_dir=run.model_dir,
                          steps_per_loop=run.steps_per_loop,
                          log_every=min(run.log_every, total), save_every=save_every,
                          keep_checkpoints=run.keep_checkpoints, jit_compile=self.jit_compile,
                          nonfinite=run.nonfinite, seed=seed)
        self._evaluations = []

        def on_eval(step):
            self._evaluations.append(self.evaluate_and_keep_best(step))

        self._do_eval = do_eval
        # Evaluating at the marks is an action of the loop (engine/actions.py); with it, a stop
        # requested while evaluating saves and returns at that step.
        self._trainer = self.trainer_type(self.strategy, objective, optimizer_fn,
                                          task_dataset_fn(task, spec), loop,
                                          actions=[Evaluate(marks, on_eval)])
        return self._trainer

    def train(self, do_eval: bool = True) -> dict:
        """Train for the recipe's steps, evaluating (when `do_eval`) at every mark and at the end,
        keeping `best/`. Returns {"step", "history", "best", "evaluations", "checkpoint",
        "preempted"}; a preempted run (SIGTERM, Ctrl-C) returns at once after its checkpoint,
        without the final evaluation. Uses the trainer of `prepare_training` when it was
        called (its `do_eval` then wins)."""
        if self._trainer is None:
            self.prepare_training(do_eval)
        trainer, do_eval = self._trainer, self._do_eval
        prepare = getattr(trainer, "prepare", None)
        if prepare is not None:
            prepare()  # restores the newest checkpoint; refuses a mismatched one, writes nothing
        self._write_run_info()
        result = trainer.train()
        if do_eval and self.task.eval_splits and not result.preempted:
            self._evaluations.append(self.evaluate_and_keep_best(result.step))
        return {"step": result.step, "history": result.history, "best": self.best,
                "evaluations": [e for e in self._evaluations if e is not None],
                "checkpoint": result.checkpoint, "preempted": result.preempted}

    # ------------------------------------------------------------------ evaluate
    def _feature_records(self, split: str, purpose: str):
        """The split's pre-tokenized feature records (made on first use) when the run reads
        records (--feature_records; auto: TPU and multi-worker), else None."""
        return feature_records_for(
            self.task, split, self.examples[split], self.tokenizer, self.hp,
            mode=self.run.feature_records, root=self.run.feature_records_dir or os.path.join(
                self.run.model_dir, "feature_records"), strategy_kind=self.info.kind,
            num_workers=self.info.num_workers, is_chief=self.info.is_chief, purpose=purpose,
            global_batch=self.hp.global_eval_batch_size if purpose == "eval" else None)

    def _data(self, split: str) -> EvalData:
        if split not in self._eval_data:
            self._eval_data[split] = self.task.eval_data(
                self.examples[split], self.tokenizer, self.hp, self.hp.global_eval_batch_size,
                records=self._feature_records(split, "eval"))
        return self._eval_data[split]

    def _predict(self, split: str) -> Dict[str, np.ndarray]:
        self.build()
        if self._predictor is None:
            self._predictor = Predictor(self.strategy, self.task, self.model, self.jit_compile)
        return self._predictor(self._data(split), self.hp.global_eval_batch_size)

    def evaluate(self) -> Dict[str, float]:
        """Metrics of the current model on every eval split, merged (holds task.main_metric)."""
        per_split = {}
        for split in self.task.eval_splits:
            per_split[split] = self.task.compute_metrics(split, self._data(split),
                                                         self._predict(split), self.hp)
        metrics = self.task.combine_metrics(per_split)
        if self.task.main_metric not in metrics:
            raise RuntimeError(f"{self.task.name}: metrics {sorted(metrics)} lack the main "
                               f"metric {self.task.main_metric!r}")
        return metrics

    def _read_evaluated(self) -> Dict[int, dict]:
        path = os.path.join(self.run.model_dir, EVAL_RESULTS)
        if not tf.io.gfile.exists(path):
            return {}
        with tf.io.gfile.GFile(path) as f:
            return {int(r["step"]): r for r in (json.loads(line) for line in f if line.strip())}

    def evaluate_and_keep_best(self, step: int) -> Optional[dict]:
        """Evaluate at `step` (once per step, also across restarts), log, append to
        eval_results.jsonl and refresh best/ when the main metric improved."""
        done = self._read_evaluated()
        best = self._keep_best.best  # best_result.json of an earlier (preempted) run
        if step in done:
            return None
        t0 = time.time()
        metrics = self.evaluate()
        main = float(metrics[self.task.main_metric])
        record = {"step": int(step), "epoch": step * self.hp.batch_size / max(self.train_rows, 1),
                  "eval_seconds": time.time() - t0, **{k: _jsonable(v) for k, v in metrics.items()}}
        improved = self._keep_best.improves(main)
        logging.info("eval at step %d: %s = %.4f%s | %s", step, self.task.main_metric, main,
                     " (best so far)" if improved else f" (best {best['value']:.4f} at step "
                     f"{best['step']})", _fmt(metrics))
        if self.info.is_chief:
            from funnel_tf.engine import run_lock

            run_lock.verify_held(self.run.model_dir)  # a run that lost its lock writes nothing
            path = os.path.join(self.run.model_dir, EVAL_RESULTS)
            tf.io.gfile.makedirs(self.run.model_dir)
            with tf.io.gfile.GFile(path, "a") as f:
                f.write(json_text.dumps(record) + "\n")
        self._keep_best.offer(step, main, record)  # best/, then best_result.json
        return record

    @property
    def best(self) -> Optional[dict]:
        """best_result.json's record: step, metric, value and metrics of best/ (None: none yet)."""
        return self._keep_best.best

    def _save_best(self, step: int) -> None:
        self.save_model(os.path.join(self.run.model_dir, BEST_DIR))

    # ------------------------------------------------------------------ save / restore
    def save_model(self, directory: str) -> Optional[str]:
        """Write the model (native format), task.json and the vocab to `directory`, atomically
        (a temp sibling renamed into place). Chief only."""
        if not self.info.is_chief:
            return None
        from funnel_tf.checkpoints.native import save_pretrained

        storage.recover_dir(directory)
        tmp = storage.make_temp_dir_beside(directory, ".tmp_best_")
        try:
            save_pretrained(self.model, tmp)
            atomic_write_json(os.path.join(tmp, TASK_JSON), self.run_info())
            tf.io.gfile.copy(self.tokenizer.vocab_path, os.path.join(tmp, "vocab.txt"),
                             overwrite=True)
            storage.replace_dir(tmp, directory)
        except BaseException:
            storage.remove_tree(tmp)
            raise
        return directory

    def restore_best(self) -> bool:
        """Load best/ into the model if it exists (True), else keep the current weights."""
        path = os.path.join(self.run.model_dir, BEST_DIR)
        storage.recover_dir(path)
        if not has_best(self.run.model_dir):
            return False
        from funnel_tf.checkpoints.native import load_native_weights

        self.build()
        load_native_weights(self.model, path)
        logging.info("restored the best model from %s", path)
        return True

    # ------------------------------------------------------------------ predict / export
    def predict(self, out_dir: str) -> Dict[str, List[str]]:
        """Predict every predict split; all predictions are computed before any file is written.
        Returns {split: [paths]} (labelled splits also get their metrics logged)."""
        outputs = {split: self._predict(split) for split in self.predict_splits}
        written = {}
        for split, out in outputs.items():
            data = self._data(split)
            written[split] = self.task.write_predictions(split, data, out, self.hp, out_dir)
            logging.info("%s %s predictions: %s", self.task.name, split, written[split])
        return written

    def export(self, export_dir: str, overwrite: bool = False) -> str:
        from funnel_tf.export import export_saved_model

        self.build()
        module = self.task.serving_module(self.model, self.tokenizer, self.hp)
        return export_saved_model(module, export_dir, overwrite=overwrite)

    # ------------------------------------------------------------------ bookkeeping
    def run_info(self) -> dict:
        return {**self.task.task_info(self.hp), "hparams": dataclasses.asdict(self.hp),
                "vocab_file": self.tokenizer.vocab_path, "config": self.config.to_dict()}

    def _write_run_info(self):
        if self.info.is_chief:
            atomic_write_json(os.path.join(self.run.model_dir, TASK_JSON), self.run_info())
            atomic_write_text(os.path.join(self.run.model_dir, "config.json"),
                              self.config.to_json_string())
            if self.record is not None:
                from funnel_tf.engine.run_record import write_record

                write_record(self.run.model_dir, self.record)


def _head(examples, n: int):
    """The first n examples of any examples container (TextExamples, SquadData, RaceExamples)."""
    from funnel_tf.text.classification import TextExamples
    from funnel_tf.text.race import RaceExamples
    from funnel_tf.text.squad_json import SquadData

    if isinstance(examples, TextExamples):
        return dataclasses.replace(
            examples, text_a=examples.text_a[:n],
            text_b=None if examples.text_b is None else examples.text_b[:n],
            labels=examples.labels[:n], ids=examples.ids[:n])
    if isinstance(examples, SquadData):
        return dataclasses.replace(examples, examples=examples.examples[:n])
    if isinstance(examples, RaceExamples):
        return dataclasses.replace(examples, articles=examples.articles[:n], qa=examples.qa[:n],
                                   labels=examples.labels[:n], levels=examples.levels[:n],
                                   ids=examples.ids[:n])
    raise TypeError(f"cannot take the head of {type(examples).__name__}")


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def _fmt(metrics: Dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in sorted(metrics.items()))

