"""Sequence classification and regression: every GLUE task, the paper's text-classification
benchmarks (IMDB, AG News, DBpedia, Yelp-2/5, Amazon-2/5) and any labelled CSV/TSV.

Model: the encoder only (FunnelBaseModel) -> CLS state -> tanh dense -> dropout -> dense
(FunnelForSequenceClassification), as the paper. Loss: softmax cross-entropy, or mean squared
error for regression (STS-B, 1 output). Metrics: GLUE's per task (CoLA MCC, MRPC/QQP accuracy+F1,
STS-B Pearson/Spearman, MNLI matched and mismatched accuracy, others accuracy); accuracy and error
rate (the paper's number) for the text-classification benchmarks.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from keras import ops

from funnel_tf.metrics import classification as cls_metrics
from funnel_tf.metrics import glue as glue_metrics
from funnel_tf.modeling.heads import FunnelForSequenceClassification
from funnel_tf.tasks.base import (EvalData, FinetuningTask, TaskError, atomic_write_text,
                                  rows_by_example)
from funnel_tf.tasks.defaults import Hparams
from funnel_tf.tasks.losses import cross_entropy_and_correct
from funnel_tf.text import benchmarks as text_benchmarks
from funnel_tf.text import classification as text_cls
from funnel_tf.text import glue as text_glue
from funnel_tf.text.classification import TextExamples


class SequenceClassificationTask(FinetuningTask):
    """Shared model, loss, datasets, predictions and export; subclasses say how to read files."""

    # Fixed at construction for GLUE / benchmarks; the generic CSV task learns them from train.
    label_names: Optional[Tuple[str, ...]] = None
    is_pair: bool = False
    regression: bool = False
    clean_web_text: bool = False   # apply the original's web-text cleaning in the serving graph

    @property
    def num_outputs(self) -> int:
        return 1 if self.regression else len(self.label_names)

    @property
    def metrics(self):
        if self.regression:
            return {"loss": ("loss_sum", "weight")}
        return {"loss": ("loss_sum", "weight"), "accuracy": ("correct", "weight")}

    # ------------------------------------------------------------------ data
    def check_examples(self, examples: TextExamples, split: str) -> TextExamples:
        """Labels must belong to the task's label set (readers check values; this checks ids)."""
        if examples.has_labels and not self.regression:
            bad = np.flatnonzero((examples.labels < 0) | (examples.labels >= self.num_outputs))
            if bad.size:
                raise TaskError(f"{examples.source}: example {examples.ids[bad[0]]} of split "
                                f"{split} has label id {examples.labels[bad[0]]} outside the "
                                f"task's {self.num_outputs} labels {list(self.label_names)}")
        if (examples.text_b is not None) != self.is_pair:
            raise TaskError(f"{examples.source}: task {self.name} expects "
                            f"{'text pairs' if self.is_pair else 'single texts'}")
        return examples

    def train_dataset(self, examples, tokenizer, hp: Hparams, seed: int,
                      records=None) -> tf.data.Dataset:
        if not examples.has_labels:
            raise TaskError(f"{examples.source}: training split has no labels")
        if records is not None:  # the examples shuffled with the same seed, then repeated
            return records.dataset(shuffle_seed=seed, repeat=True)
        return text_cls.encode_text_examples(examples, tokenizer, hp.max_seq_length, shuffle=True,
                                             seed=seed, repeat=True)

    def train_units(self, examples, tokenizer, hp: Hparams) -> tf.data.Dataset:
        if not examples.has_labels:
            raise TaskError(f"{examples.source}: training split has no labels")
        return text_cls.encode_text_examples(examples, tokenizer, hp.max_seq_length)

    def eval_units(self, examples, tokenizer, hp: Hparams, global_batch: int) -> tf.data.Dataset:
        return text_cls.encode_text_examples(examples, tokenizer, hp.max_seq_length,
                                             pad_to_multiple_of=global_batch)

    def eval_data(self, examples, tokenizer, hp: Hparams, global_batch: int,
                  records=None) -> EvalData:
        ds = None if records is not None else self.eval_units(examples, tokenizer, hp,
                                                              global_batch)
        return EvalData(ds, examples, len(examples), records=records)

    # ------------------------------------------------------------------ model
    def build_model(self, config):
        return FunnelForSequenceClassification(config, num_labels=self.num_outputs,
                                               name="classifier_model")

    def per_example_loss(self, model, features, training):
        logits = model(self.model_inputs(features), training=training)["logits"]  # [B, C]
        if self.regression:
            score = ops.cast(logits[:, 0], "float32")
            target = ops.cast(features["label"], "float32")
            return ops.square(score - target), {}
        ce, correct = cross_entropy_and_correct(logits, features["label"])     # [B] each
        return ce, {"correct": correct}

    def predict(self, model, features):
        logits = model(self.model_inputs(features), training=False)["logits"]
        return {"logits": logits, "example_index": features["example_index"]}

    # ------------------------------------------------------------------ results
    def _ordered(self, data: EvalData, outputs) -> Dict[str, np.ndarray]:
        return rows_by_example(outputs, data.num_rows)

    def predictions(self, logits: np.ndarray) -> np.ndarray:
        """Class ids [N] or scores [N] from logits [N, C]."""
        return logits[:, 0] if self.regression else np.argmax(logits, axis=-1)

    def compute_metrics(self, split, data, outputs, hp):
        rows = self._ordered(data, outputs)
        labels = data.examples.labels
        preds = self.predictions(rows["logits"])
        if self.regression:
            r, rho = cls_metrics.pearson(preds, labels), cls_metrics.spearman(preds, labels)
            return {"pearson": r, "spearman": rho, "pearson_spearman_mean": (r + rho) / 2,
                    "mse": float(np.mean((preds - labels) ** 2))}
        acc = cls_metrics.accuracy(preds, labels)
        return {"accuracy": acc, "error_rate": 1.0 - acc}

    def write_predictions(self, split, data, outputs, hp, out_dir) -> List[str]:
        """`<task>_<split>_predictions.tsv`: id, prediction (label name or score), then the
        class probabilities (or nothing for regression)."""
        rows = self._ordered(data, outputs)
        preds = self.predictions(rows["logits"])
        header = ["id", "prediction"]
        lines = []
        if self.regression:
            for i, p in zip(data.examples.ids, preds):
                lines.append(f"{i}\t{float(p)!r}")
        else:
            probs = _softmax(rows["logits"])
            header += [f"p_{name}" for name in self.label_names]
            for i, p, pr in zip(data.examples.ids, preds, probs):
                lines.append("\t".join([str(i), self.label_names[int(p)]]
                                       + [f"{x:.6f}" for x in pr]))
        path = os.path.join(out_dir, f"{_file_safe(self.name)}_{split}_predictions.tsv")
        atomic_write_text(path, "\n".join(["\t".join(header)] + lines) + "\n")
        return [path]

    # ------------------------------------------------------------------ export
    def serving_module(self, model, tokenizer, hp):
        from funnel_tf.export import ClassifierServing

        return ClassifierServing(model, tokenizer, hp.max_seq_length, pair=self.is_pair,
                                 label_names=None if self.regression else self.label_names,
                                 clean_web_text=self.clean_web_text)

    def task_info(self, hp):
        info = super().task_info(hp)
        info.update(label_names=None if self.regression else list(self.label_names),
                    regression=self.regression, pair=self.is_pair)
        return info


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


# ---------------------------------------------------------------------------------- GLUE
class GlueTask(SequenceClassificationTask):
    """One GLUE task from the original TSVs (`--data_dir` = GLUE root or the task folder)."""

    def __init__(self, glue_name: str):
        spec = text_glue.get_glue_task(glue_name)
        self.spec = spec
        self.name = spec.name
        self.defaults_key = spec.name
        self.label_names = spec.label_names
        self.regression = spec.is_regression
        self.is_pair = spec.is_pair
        self.metric_key = glue_metrics.canonical_task(spec.name)
        if self.label_names is not None and tuple(self.label_names) != tuple(
                glue_metrics.label_names(self.metric_key)):
            raise AssertionError(f"{spec.name}: reader and metric label orders differ")
        self.train_split = "train" if "train" in spec.splits else None
        self.eval_splits = tuple(spec.eval_splits)
        self.predict_splits = tuple(spec.test_splits)
        if spec.name == "mnli":
            self.main_metric = "matched_accuracy"
        else:
            self.main_metric = glue_metrics.main_metric(self.metric_key)

    tfds_data_dir: Optional[str] = None

    def use_tfds(self, tfds_data_dir: str) -> "GlueTask":
        """Read splits from a prepared TFDS `glue/<config>` under `tfds_data_dir` (nothing is
        downloaded) instead of the TSVs; --train_file etc. still win for their split."""
        self.tfds_data_dir = tfds_data_dir
        return self

    def needs_data_dir(self, splits):
        return self.tfds_data_dir is None and super().needs_data_dir(splits)

    def _tfds_split(self, split: str) -> str:
        import tensorflow_datasets as tfds

        if split not in self.spec.tfds_splits:
            raise KeyError(f"{self.name}: split {split!r} is not in TFDS glue/"
                           f"{self.spec.tfds_config}")
        name = f"glue/{self.spec.tfds_config}"
        builder = tfds.builder(name, data_dir=self.tfds_data_dir)
        if not builder.is_prepared():
            raise FileNotFoundError(f"TFDS {name} is not prepared under {self.tfds_data_dir} "
                                    f"(prepare it with `tfds build {name} "
                                    f"--data_dir={self.tfds_data_dir}`)")
        tfds_split = self.spec.tfds_splits[split]
        if tfds_split not in builder.info.splits:
            raise FileNotFoundError(f"TFDS {name} under {self.tfds_data_dir} has no split "
                                    f"{tfds_split!r}")
        return f"tfds:{name}:{tfds_split}@{self.tfds_data_dir}"

    def split_path(self, data_dir, split):
        override = self.override_path(data_dir, split)
        if override:
            return override
        if self.tfds_data_dir:
            return self._tfds_split(split)
        return text_glue.glue_file_path(self.name, data_dir, split)

    def load(self, data_dir, split, skip_malformed=False):
        path = self.split_path(data_dir, split)
        if path.startswith("tfds:"):
            examples = text_glue.load_glue_tfds(self.name, split, self.tfds_data_dir)
        else:
            examples = text_glue.read_glue_tsv(self.name, path, split,
                                               skip_malformed=skip_malformed)
        return self.check_examples(examples, split)

    def _metric_key(self, split: str) -> str:
        if self.name == "mnli":
            return "mnli-mm" if "mismatched" in split else "mnli-m"
        return self.metric_key

    def compute_metrics(self, split, data, outputs, hp):
        rows = self._ordered(data, outputs)
        preds = self.predictions(rows["logits"])
        return glue_metrics.compute_glue_metrics(self._metric_key(split), preds,
                                                 data.examples.labels)

    def combine_metrics(self, per_split):
        if self.name == "mnli":
            out = {}
            for split, metrics in per_split.items():
                kind = "mismatched" if "mismatched" in split else "matched"
                out.update({f"{kind}_{k}": v for k, v in metrics.items()})
            return out
        return super().combine_metrics(per_split)

    def write_predictions(self, split, data, outputs, hp, out_dir):
        """The official GLUE submission TSV (`index\\tprediction`, label strings); for a split
        that is not a test split (e.g. `--predict_splits=dev`) the file is
        `<split>_<submission name>` so it is never mistaken for a test submission."""
        rows = self._ordered(data, outputs)
        preds = self.predictions(rows["logits"])
        key = self._metric_key(split) if self.name != "ax" else "ax"
        if split in self.spec.test_splits:
            return glue_metrics.write_glue_submission(key, preds, out_dir,
                                                      indices=data.examples.ids)
        # Not a test split: write aside, then move to "<split>_<name>" (never clobbers a real
        # submission file of the same name).
        staging = os.path.join(out_dir, f".staging_{split}")
        paths = []
        for p in glue_metrics.write_glue_submission(key, preds, staging,
                                                    indices=data.examples.ids):
            new = os.path.join(out_dir, f"{split}_{os.path.basename(p)}")
            tf.io.gfile.rename(p, new, overwrite=True)
            paths.append(new)
        tf.io.gfile.rmtree(staging)
        return paths


# ---------------------------------------------------------------------------------- benchmarks
class TextClassificationTask(SequenceClassificationTask):
    """IMDB, AG News, DBpedia, Yelp-2/5, Amazon-2/5 in their original formats.

    `--data_dir` is the dataset folder (train.csv/test.csv, or aclImdb's train/ test/); for IMDB a
    `label,text` CSV pair is also accepted through `files` (e.g. {"train": ".../train.csv",
    "dev": ".../val.csv"}). The original evaluates on test.csv, so "dev" and "test" both read it.
    """

    clean_web_text = True

    def __init__(self, name: str):
        spec = text_benchmarks.get_text_cls_task(name)
        self.spec = spec
        self.name = spec.name
        self.defaults_key = spec.name
        self.label_names = spec.label_names
        self.is_pair = spec.is_pair
        self.main_metric = "accuracy"

    def split_path(self, data_dir, split):
        override = self.override_path(data_dir, split)
        if override:
            return override
        if split not in self.spec.files:
            raise KeyError(f"{self.name}: unknown split {split!r}")
        path = os.path.join(data_dir, self.spec.files[split])
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"{self.name} {split}: {path} not found")
        return path

    def load(self, data_dir, split, skip_malformed=False):
        path = self.split_path(data_dir, split)
        if self.name == "imdb":
            if tf.io.gfile.isdir(path):
                examples = text_benchmarks.read_imdb_folder(path, skip_malformed=skip_malformed)
            else:
                examples = text_benchmarks.read_imdb_csv(path, skip_malformed=skip_malformed)
        else:
            examples = text_benchmarks.read_zhang_csv(path, self.spec,
                                                      skip_malformed=skip_malformed,
                                                      split_name=split)
        return self.check_examples(examples, split)


class CsvClassificationTask(SequenceClassificationTask):
    """Any labelled CSV/TSV: columns by index or header name; labels learnt from the train file
    (or given), and dev/test labels must belong to that set."""

    def __init__(self, files: Dict[str, str], text_a_column, label_column, text_b_column=None,
                 label_names: Optional[Sequence[str]] = None, regression: bool = False,
                 has_header: bool = True, delimiter: Optional[str] = None,
                 id_column=None, clean: bool = False, name: str = "csv"):
        self.name = name
        self.defaults_key = "csv"
        self.set_files(files)
        self.columns = dict(text_a_column=text_a_column, label_column=label_column,
                            text_b_column=text_b_column, id_column=id_column)
        self.label_names = tuple(label_names) if label_names else None
        self.regression = regression
        self.is_pair = text_b_column is not None
        self.has_header = has_header
        self.delimiter = delimiter
        self.clean = clean
        self.clean_web_text = clean
        self.main_metric = "pearson_spearman_mean" if regression else "accuracy"
        self.eval_splits = ("dev",) if "dev" in self.files else ()
        self.predict_splits = ("test",) if "test" in self.files else ()
        self.train_split = "train" if "train" in self.files else None

    def split_path(self, data_dir, split):
        if split not in self.files:
            raise KeyError(f"csv task: no file given for split {split!r} (use --train_file / "
                           f"--dev_file / --test_file)")
        return self.override_path(data_dir, split)

    def check_files(self, data_dir, splits):
        # The CSV task's files may be absolute paths; data_dir is optional.
        found, missing = {}, []
        for split in splits:
            try:
                found[split] = self.split_path(data_dir, split)
            except (FileNotFoundError, KeyError) as e:
                missing.append(f"  {split}: {e}")
        if missing:
            raise TaskError("task csv: missing task files:\n" + "\n".join(missing))
        return found

    def load(self, data_dir, split, skip_malformed=False):
        path = self.split_path(data_dir, split)
        label_column = self.columns["label_column"] if split != "test" else None
        if split == "test" and not self.regression and self.label_names is None:
            raise TaskError("csv task: label names are unknown; load the train split first or "
                            "pass --label_names")
        examples = text_cls.read_labelled_file(
            path, text_a_column=self.columns["text_a_column"], label_column=label_column,
            text_b_column=self.columns["text_b_column"], label_names=self.label_names,
            regression=self.regression, delimiter=self.delimiter, has_header=self.has_header,
            id_column=self.columns["id_column"], clean=self.clean,
            skip_malformed=skip_malformed, split_name=split)
        if not self.regression and self.label_names is None:
            if len(examples.label_names) < 2:
                raise TaskError(f"{path}: found only the labels {list(examples.label_names)}; "
                                f"classification needs at least 2")
            self.label_names = tuple(examples.label_names)
        return self.check_examples(examples, split)


# GLUE names accepted by `--task` (aliases resolve through text.glue).
GLUE_NAMES = tuple(text_glue.GLUE_TASKS)
TEXT_CLS_NAMES = tuple(text_benchmarks.TEXT_CLS_TASKS)

__all__ = ["SequenceClassificationTask", "GlueTask", "TextClassificationTask",
           "CsvClassificationTask", "GLUE_NAMES", "TEXT_CLS_NAMES"]
