"""The one Task interface: everything a run trains (MLM, ELECTRA, GLUE, text classification,
SQuAD, RACE), in the spirit of Model Garden's `official/core/base_task.py`.

`Task` is what the engine (`engine/loop.py`) sees: its input, built from a typed spec of what to
read (`build_inputs`, tasks/inputs.py), the features a batch must hold, the models it builds
(model), its loss split across replicas (loss) and the training statistics it reports (metrics).
`FinetuningTask` adds what finetune.py needs on top: which files a split lives in
and how to parse them (through `funnel_tf.text`), the per-example loss, prediction outputs, the
paper's metrics (`funnel_tf.metrics`), prediction files and the text-in serving module for export.

Distribution contract (read by the loop): every loss is a *global* weighted mean. The loop first
sums `local_normalizers(features)` across replicas, then each replica returns
`sum_of_its_weighted_losses / global_normalizer`; summing gradients across replicas then gives
exactly the gradient of the global-batch mean, for any replica count. Statistics are local sums
(numerators and "<name>_count" style denominators) that the loop sums across replicas and steps
before dividing, as `metrics` says.

Finetuning feature conventions shared by every reader: model inputs int32, `label` per example,
`example_weight` float32 (0 for the padding rows that make an eval set a multiple of the global
batch), `example_index` int32 (row in the parsed examples, -1 for padding).
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from funnel_tf import json_text
from funnel_tf.storage import atomic_write_text  # noqa: F401  (tasks import it from here)
from funnel_tf.config import FunnelConfig
from funnel_tf.tasks.defaults import Hparams, default_hparams
from funnel_tf.tasks.errors import TaskError  # noqa: F401  (re-exported: tasks raise it)
from funnel_tf.tasks.inputs import FinetuningInputSpec
from funnel_tf.tasks.losses import divide_no_nan, weighted_sum

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Task(abc.ABC):
    """One thing a run trains: inputs, models, loss and training statistics.

    Args of the subclasses vary (a GLUE name, an MLM config); every task holds the model `config`
    it builds with (`bind` sets it) and, once `build()` ran, its `models`.
    """

    name: str = ""
    # Training statistics: metric name -> (numerator stat, denominator stat or None = per step).
    metrics: Dict[str, Tuple[str, Optional[str]]] = {}
    # Model-input feature keys the model consumes, and every feature key the loss reads.
    input_keys: Tuple[str, ...] = MODEL_INPUTS
    feature_keys: Tuple[str, ...] = ()
    backbone_model: str = "model"    # the entry of `models` whose `.funnel` is the backbone
    config: Optional[FunnelConfig] = None
    _models: Optional[Dict[str, keras.Model]] = None

    # ------------------------------------------------------------------ inputs
    @abc.abstractmethod
    def build_inputs(self, spec, input_context: Optional[tf.distribute.InputContext] = None
                     ) -> tf.data.Dataset:
        """The dataset `spec` describes (tasks/inputs.py: PretrainingInputSpec for MLM and
        ELECTRA, FinetuningInputSpec for the finetuning tasks). Training input comes in batches
        per replica of the pipeline `input_context` names (one pipeline when None); the engines
        (engine/inputs.py, the JAX trainer's batches) read every task's input through here."""

    def model_inputs(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """The model's own inputs among `features` ([B, L] int32 each)."""
        return {k: features[k] for k in self.input_keys if k in features}

    def check_features(self, features: Mapping[str, tf.Tensor]) -> None:
        """Fail early (at trace time) with the missing key names instead of a KeyError deep
        inside."""
        missing = [k for k in self.feature_keys if k not in features]
        if missing:
            raise KeyError(f"{self.name} features lack {missing}; got {sorted(features)}")

    # ------------------------------------------------------------------ model
    def build_model(self, config: FunnelConfig) -> keras.Model:
        """A fresh head model (its backbone is `model.funnel`)."""
        raise NotImplementedError(f"task {self.name} builds {self.backbone_model} and more: "
                                  f"use build_models")

    def build_models(self, config: FunnelConfig) -> Dict[str, keras.Model]:
        """Fresh named models, as they are checkpointed (default: {"model": build_model})."""
        return {"model": self.build_model(config)}

    def bind(self, config: FunnelConfig,
             models: Optional[Dict[str, keras.Model]] = None) -> "Task":
        """A copy of this task for one run: it builds with `config`, or trains `models` that are
        already built (the finetuning runner's, which it also evaluates)."""
        task = copy.copy(self)
        task.config, task._models = config, (dict(models) if models is not None else None)
        return task

    def build(self) -> None:
        """Create the models from `config` unless they exist; call inside `strategy.scope()`."""
        if self._models is None:
            self._models = self.build_models(self.config)

    @property
    def models(self) -> Dict[str, keras.Model]:
        """Named models to checkpoint (after `build`)."""
        if self._models is None:
            raise RuntimeError(f"task {self.name}: call build() first")
        return self._models

    @property
    def model(self) -> keras.Model:
        return self.models["model"]

    @property
    def backbone(self) -> keras.Model:
        """The Funnel backbone that a converted checkpoint warm-starts."""
        return self.models[self.backbone_model].funnel

    @property
    def trainable_variables(self) -> List:
        seen, out = set(), []
        for model in self.models.values():
            for v in model.trainable_variables:
                if id(v) not in seen:  # shared layers (ELECTRA embeddings) appear once
                    seen.add(id(v))
                    out.append(v)
        return out

    # ------------------------------------------------------------------ loss and metrics
    @abc.abstractmethod
    def local_normalizers(self, features) -> Dict[str, tf.Tensor]:
        """{name: float32 scalar} this replica's share of each loss denominator."""

    @abc.abstractmethod
    def loss_and_stats(self, features, normalizers, training: bool,
                       seed: tf.Tensor) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """-> (this replica's share of the global loss, {stat: local float32 sum}). `normalizers`
        are the global sums of `local_normalizers`; `seed` differs per step and per replica: an
        int32 [2] stateless-RNG seed on the TF engine, the step's PRNG key on the JAX engine (one
        replica: the global batch). Written in keras.ops, the same method serves both engines."""


@dataclasses.dataclass
class EvalData:
    """A split ready for prediction: its unbatched rows (read through `build_inputs` with a
    FinetuningInputSpec whose `prepared` is this) plus what the metrics need."""

    dataset: Optional[tf.data.Dataset]  # unbatched rows in order, padded with weight-0 rows to
                                   # a multiple of the global eval batch (None: from `records`)
    examples: Any                  # the parsed examples (TextExamples, SquadData, RaceExamples)
    num_rows: int                  # rows before padding (examples, or SQuAD windows)
    aux: Any = None                # task-specific extras (e.g. SquadFeatures)
    records: Any = None            # feature_records.RecordSource of the same rows, or None


class FinetuningTask(Task):
    """One downstream task family: the Task contract through `per_example_loss` (a mean weighted
    by `example_weight` over the global batch), plus data files, evaluation, predictions and
    export. Subclasses fill in the abstract methods; see the module docstring."""

    name: str = ""                   # registry name, e.g. "sst-2"
    defaults_key: str = ""           # key into defaults.DEFAULTS
    main_metric: str = "accuracy"    # higher is better; picks the best checkpoint
    uses_decoder: bool = False       # full model (SQuAD) vs encoder only
    train_split: Optional[str] = "train"
    eval_splits: Tuple[str, ...] = ("dev",)
    predict_splits: Tuple[str, ...] = ("test",)

    # ------------------------------------------------------------------ recipe
    def default_hparams(self) -> Hparams:
        return default_hparams(self.defaults_key or self.name)

    def describe(self) -> str:
        return f"{self.name} (main metric {self.main_metric})"

    # ------------------------------------------------------------------ data
    # Per-split file overrides ({"train": path, ...}), e.g. from --train_file / --dev_file /
    # --test_file; a relative path is taken relative to data_dir.
    files: Dict[str, str] = {}

    def set_files(self, files: Optional[Mapping[str, str]]) -> "Task":
        """Set per-split overrides. The generic keys "dev" / "test" (--dev_file / --test_file)
        name the task's first eval / predict split when it calls them otherwise (MNLI's
        dev_matched); a second such split keeps its standard file."""
        files = {k: v for k, v in dict(files or {}).items() if v}
        for generic, splits in (("dev", self.eval_splits), ("test", self.predict_splits)):
            if generic in files and splits and generic not in splits:
                files[splits[0]] = files.pop(generic)
        self.files = files
        return self

    def override_path(self, data_dir: Optional[str], split: str) -> Optional[str]:
        """The user-given path of `split` (checked to exist), or None when not overridden."""
        if split not in self.files:
            return None
        path = self.files[split]
        if data_dir and not os.path.isabs(path) and not tf.io.gfile.exists(path):
            path = os.path.join(data_dir, path)
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"{self.name} {split}: {path} not found")
        return path

    @abc.abstractmethod
    def split_path(self, data_dir: str, split: str) -> str:
        """Path of `split`'s file/folder under `data_dir`; FileNotFoundError says what was
        tried."""

    def check_files(self, data_dir: str, splits: Sequence[str]) -> Dict[str, str]:
        """{split: path} for every split, or one TaskError listing every missing one."""
        if self.needs_data_dir(splits):
            if not data_dir:
                raise TaskError(f"task {self.name}: --data_dir is required")
            if not tf.io.gfile.exists(data_dir):
                raise TaskError(f"task {self.name}: data_dir {data_dir} does not exist")
        found, missing = {}, []
        for split in splits:
            try:
                found[split] = self.split_path(data_dir, split)
            except (FileNotFoundError, KeyError) as e:
                missing.append(f"  {split}: {str(e).strip(chr(39))}")
        if missing:
            predicted = [s for s in splits if s not in found and s != self.train_split
                         and s not in self.eval_splits]  # asked for by --do_predict only
            hint = (f"\n--do_predict reads {', '.join(predicted)}: add those files, or predict "
                    f"other splits with --predict_splits (e.g. --predict_splits=dev)"
                    if predicted else "")
            raise TaskError(f"task {self.name}: missing task files under {data_dir}:\n"
                            + "\n".join(missing) + hint)
        return found

    def needs_data_dir(self, splits: Sequence[str]) -> bool:
        return not all(s in self.files for s in splits)

    @abc.abstractmethod
    def load(self, data_dir: str, split: str, skip_malformed: bool = False):
        """Parsed, validated examples of a split (errors name the file and line)."""

    def build_inputs(self, spec: FinetuningInputSpec,
                     input_context: Optional[tf.distribute.InputContext] = None
                     ) -> tf.data.Dataset:
        """Training: `train_dataset`'s rows, this pipeline's slice of them (every host shuffles
        with the same seed, so the streams agree and the slices are disjoint), in per-replica
        batches of `hp.batch_size` global (remainder dropped). Evaluation: the split's ordered
        rows, unbatched, padded to a multiple of the global eval batch (from the feature records
        when it has them, core TF ops only; else the in-graph tokenizing dataset); the Predictor
        batches and distributes them, so evaluation takes no input_context."""
        if not isinstance(spec, FinetuningInputSpec):
            raise TypeError(f"task {self.name} reads a FinetuningInputSpec, got "
                            f"{type(spec).__name__}")
        if not spec.training:
            if input_context is not None:
                raise ValueError("evaluation rows are read whole (the Predictor distributes "
                                 "them): pass no input_context")
            data = spec.prepared
            if data is None:
                data = self.eval_data(spec.examples, spec.tokenizer, spec.hp,
                                      spec.hp.global_eval_batch_size, records=spec.records)
            return data.records.dataset() if data.records is not None else data.dataset
        ctx = input_context or tf.distribute.InputContext()
        ds = self.train_dataset(spec.examples, spec.tokenizer, spec.hp, spec.seed,
                                records=spec.records)
        if ctx.num_input_pipelines > 1:
            ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
        return ds.batch(ctx.get_per_replica_batch_size(spec.hp.batch_size),
                        drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    # The task family's input hooks, which build_inputs composes.
    @abc.abstractmethod
    def train_dataset(self, examples, tokenizer, hp: Hparams, seed: int,
                      records=None) -> tf.data.Dataset:
        """Unbatched, shuffled, repeated training features (every example with weight 1). With
        `records` (a feature_records.RecordSource of `train_units`) the same stream, in the same
        order, read from pre-tokenized records with core TF ops only."""

    @abc.abstractmethod
    def eval_data(self, examples, tokenizer, hp: Hparams, global_batch: int,
                  records=None) -> EvalData:
        """Ordered, unbatched features padded to a multiple of `global_batch` (with `records`,
        of `eval_units`, read from those instead)."""

    # Feature records (text/feature_records.py): the units the tokenizing pipeline is made of,
    # unshuffled, in example order, for writing once; None = the task does not use records
    # there (its pipeline has no tensorflow-text op in it).
    def train_units(self, examples, tokenizer, hp: Hparams) -> Optional[tf.data.Dataset]:
        return None

    def eval_units(self, examples, tokenizer, hp: Hparams,
                   global_batch: int) -> Optional[tf.data.Dataset]:
        return None

    def record_options(self, hp: Hparams) -> Dict[str, Any]:
        """The hyperparameters that shape the features (part of the records' cache key)."""
        return {"max_seq_length": hp.max_seq_length}

    def num_train_rows(self, examples, tokenizer, hp: Hparams) -> int:
        """Training rows per epoch (examples; SQuAD overrides with its window count)."""
        return len(examples)

    def tokens_per_row(self, hp: Hparams) -> int:
        """Tokens the model reads per training row (for the tokens/s progress figure)."""
        return hp.max_seq_length

    # ------------------------------------------------------------------ model and loss
    @abc.abstractmethod
    def build_model(self, config: FunnelConfig) -> keras.Model:
        """A fresh head model (its backbone is `model.funnel`)."""

    @abc.abstractmethod
    def per_example_loss(self, model, features, training: bool
                         ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """-> (loss float32 [B], {stat: float32 [B] per-example values to be weight-summed})."""

    # Stats reported during training: name -> (numerator stat, denominator stat or None).
    metrics: Dict[str, Tuple[str, Optional[str]]] = {
        "loss": ("loss_sum", "weight"), "accuracy": ("correct", "weight")}

    def local_normalizers(self, features):
        return {"weight": ops.sum(ops.cast(features["example_weight"], "float32"))}

    def loss_and_stats(self, features, normalizers, training, seed):
        """The weighted mean of the per-example losses over the *global* batch: each replica
        returns sum(loss * weight) / global_weight_sum, so gradients summed across replicas equal
        one-device gradients (keras.ops: the TF and the JAX engine run it)."""
        del seed
        weights = ops.cast(features["example_weight"], "float32")             # [B]
        per_example, stats = self.per_example_loss(self.model, features, training)
        loss_sum = weighted_sum(per_example, weights)
        loss = divide_no_nan(loss_sum, normalizers["weight"])
        out = {"loss_sum": loss_sum, "weight": ops.sum(weights)}
        for k, v in stats.items():
            out[k] = weighted_sum(v, weights)
        return loss, out

    @abc.abstractmethod
    def predict(self, model, features) -> Dict[str, tf.Tensor]:
        """Outputs per row, all [B, ...] float32/int32 (always including example_index)."""

    # ------------------------------------------------------------------ results
    @abc.abstractmethod
    def compute_metrics(self, split: str, data: EvalData, outputs: Dict[str, np.ndarray],
                        hp: Hparams) -> Dict[str, float]:
        """The paper's metrics for a labelled split from the gathered outputs."""

    @abc.abstractmethod
    def write_predictions(self, split: str, data: EvalData, outputs: Dict[str, np.ndarray],
                          hp: Hparams, out_dir: str) -> List[str]:
        """Prediction files for `split` (validated first, then written atomically)."""

    def combine_metrics(self, per_split: Dict[str, Dict[str, float]]) -> Dict[str, float]:
        """Merge the metrics of all eval splits into one flat dict holding `main_metric`."""
        if len(per_split) == 1:
            return dict(next(iter(per_split.values())))
        out = {}
        for split, metrics in per_split.items():
            out.update({f"{split}_{k}": v for k, v in metrics.items()})
        return out

    # ------------------------------------------------------------------ export
    @abc.abstractmethod
    def serving_module(self, model, tokenizer, hp: Hparams) -> tf.Module:
        """A tf.Module whose `serve` tf.function takes raw strings (see funnel_tf.export)."""

    def task_info(self, hp: Hparams) -> Dict[str, Any]:
        """JSON-able description stored next to checkpoints and exports."""
        return {"task": self.name, "main_metric": self.main_metric,
                "uses_decoder": self.uses_decoder, "max_seq_length": hp.max_seq_length}


# ---------------------------------------------------------------------------------- helpers
def rows_by_example(outputs: Dict[str, np.ndarray], num_examples: int) -> Dict[str, np.ndarray]:
    """Drop padding rows (example_index < 0) and order rows by example_index.

    Every example must appear exactly once, otherwise a row was lost or duplicated (a bug in the
    input pipeline or in padding) and we refuse to compute a silently wrong metric.
    """
    idx = np.asarray(outputs["example_index"]).reshape([-1])
    keep = idx >= 0
    order = np.argsort(idx[keep], kind="stable")
    got = idx[keep][order]
    if len(got) != num_examples or not np.array_equal(got, np.arange(num_examples)):
        raise RuntimeError(f"prediction rows do not cover the {num_examples} examples exactly "
                           f"once (got {len(got)} rows)")
    return {k: np.asarray(v)[keep][order] for k, v in outputs.items()}


def feature_records_for(task: "FinetuningTask", split: str, examples, tokenizer, hp: Hparams, *,
                        mode, root: str, strategy_kind: str, num_workers: int,
                        is_chief: bool = True, purpose: str = "train",
                        global_batch: Optional[int] = None):
    """The `feature_records.RecordSource` of `split` when `mode` ("auto": on TPU and
    multi-worker strategies; "always"; "never") asks for records, else None. Nothing is written
    here (the records are made when the input pipeline first asks for them); the cache key
    (task options, tokenizer, and a sha256 of the parsed examples) is computed now. Only the
    chief writes; other workers wait for its records."""
    from funnel_tf.text import feature_records as fr

    if not fr.use_records(mode, strategy_kind):
        return None
    if purpose == "train":
        make = lambda: task.train_units(examples, tokenizer, hp)  # noqa: E731
    else:
        make = lambda: task.eval_units(examples, tokenizer, hp, global_batch)  # noqa: E731
    probe = getattr(type(task), "train_units" if purpose == "train" else "eval_units")
    if probe is getattr(FinetuningTask, probe.__name__):
        if purpose == "train":
            raise TaskError(f"task {task.name} cannot feed pre-tokenized feature records "
                            f"(--feature_records); run it with --feature_records=never on a "
                            f"single host")
        return None  # its evaluation input needs no tensorflow-text op
    fr.check_root(root, strategy_kind, num_workers)
    key = {"task": task.name, "purpose": purpose, "options": task.record_options(hp),
           "global_batch": global_batch, "tokenizer": fr.tokenizer_identity(tokenizer),
           "examples_sha256": fr.fingerprint(examples), "num_examples": len(examples)}
    return fr.RecordSource(root, fr.record_name(task.name, split, purpose), key, make,
                           write=is_chief)


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json_text.dumps(obj, indent=2, sort_keys=True) + "\n")
