"""SQuAD v1.1 and v2.0 span extraction on the full model (encoder + decoder), as the paper.

Model: `FunnelForSquad` = HF's FunnelForQuestionAnswering (start/end logits from one dense layer on
the decoder output, so HF-finetuned SQuAD checkpoints load) plus, for v2.0, the original release's
answer-class head (`use_answer_class`): concat(sum_j softmax(start)_j h_j, h_CLS) -> dense(d, tanh)
-> dropout -> dense(1, no bias) gives `cls_logits`, the log-odds that the question has no answer.
We chose it over BERT's null score (start[CLS] + end[CLS]) because it is what the paper trained
and because its odds are directly a threshold-free "no answer" score; `null_odds.json` holds, per
question, the minimum cls_logit over its windows (the original's rule).

Loss (original `get_squad_loss`): 0.5 * (CE(start) + CE(end)) over the positions p_mask allows
(CLS + paragraph), plus for v2.0 0.5 * BCE(cls_logits, is_impossible).
Metrics: official EM/F1 (v1.1), and for v2.0 EM/F1 with HasAns/NoAns splits and the best null
threshold search (`best_f1`, the main metric).
"""

from __future__ import annotations

import os
from typing import List

import keras
import tensorflow as tf

from funnel_tf.config import FunnelConfig
from funnel_tf.metrics import squad as squad_metrics
from funnel_tf.modeling.dropout import Dropout
from funnel_tf.modeling.heads import FunnelForQuestionAnswering
from funnel_tf.modeling.initializers import dense_initializer
from funnel_tf.tasks.base import EvalData, FinetuningTask, TaskError, atomic_write_json
from funnel_tf.tasks.defaults import Hparams
from funnel_tf.tasks.losses import cross_entropy_and_correct
from funnel_tf.text import squad as text_squad
from funnel_tf.text import squad_json

_NEG = -1e30
TRAIN_KEYS = text_squad.MODEL_KEYS + text_squad.LABEL_KEYS + ("example_weight", "example_index")


@keras.saving.register_keras_serializable(package="funnel_tf")
class FunnelForSquad(FunnelForQuestionAnswering):
    """start/end logits [B, L] (masked by `p_mask` when given) and, with `answer_class`, cls_logits
    [B] (higher = no answer). Inputs may carry `p_mask` int [B, L] (1 = not an answer token)."""

    def __init__(self, config: FunnelConfig, answer_class: bool = True, **kwargs):
        kwargs.setdefault("name", "funnel_for_question_answering")
        self.answer_class = bool(answer_class)
        super().__init__(config, **kwargs)

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.answer_class and not hasattr(self, "answer_dense"):
            d = self.config.d_model
            self.answer_dense = keras.layers.Dense(
                d, activation="tanh", kernel_initializer=dense_initializer(self.config, 2 * d, d),
                name="answer_class_dense")
            # Ours, not keras.layers.Dropout: a different mask on each replica (dropout.py).
            self.answer_dropout = Dropout(self.config.hidden_dropout)
            self.answer_logit = keras.layers.Dense(
                1, use_bias=False, kernel_initializer=dense_initializer(self.config, d, 1),
                name="answer_class_logit")
            self.answer_dense.build((None, 2 * d))
            self.answer_logit.build((None, d))

    def _extra_config(self):
        return {"answer_class": self.answer_class}

    def call(self, inputs, training=False, output_hidden_states=False):
        out = super().call(inputs, training=training, output_hidden_states=output_hidden_states)
        p_mask = inputs.get("p_mask") if isinstance(inputs, dict) else None
        if p_mask is not None:
            invalid = tf.cast(p_mask, tf.bool)
            out["start_logits"] = tf.where(invalid, _NEG, out["start_logits"])
            out["end_logits"] = tf.where(invalid, _NEG, out["end_logits"])
        if self.answer_class:
            h = out["last_hidden_state"]                                          # [B, L, D]
            start_p = tf.nn.softmax(out["start_logits"], axis=-1)                 # [B, L]
            start_h = tf.einsum("bl,bld->bd", tf.cast(start_p, h.dtype), h)      # [B, D]
            x = self.answer_dense(tf.concat([start_h, h[:, 0]], axis=-1))
            x = self.answer_dropout(x, training=training)
            out["cls_logits"] = tf.cast(self.answer_logit(x)[:, 0], tf.float32)  # [B]
        return out


class SquadTask(FinetuningTask):
    """SQuAD v1.1 (`squad_v1.1`) or v2.0 (`squad_v2.0`) from the official JSON files.

    Files: `<data_dir>/{train,dev}-v<version>.json` (or --train_file/--dev_file). There is no
    public test set, so `--do_predict` predicts the dev split by default.
    """

    uses_decoder = True
    defaults_key = "squad"
    eval_splits = ("dev",)
    predict_splits = ("dev",)
    input_keys = ("input_ids", "attention_mask", "token_type_ids", "p_mask")

    def __init__(self, version: str):
        if version not in ("1.1", "2.0"):
            raise ValueError(f"SQuAD version must be 1.1 or 2.0, got {version!r}")
        self.version = version
        self.v2 = version == "2.0"
        self.name = f"squad_v{version}"
        self.main_metric = squad_metrics.MAIN_METRIC_V2 if self.v2 else squad_metrics.MAIN_METRIC_V1

    @property
    def metrics(self):
        metrics = {"loss": ("loss_sum", "weight"), "start_accuracy": ("start_correct", "weight")}
        if self.v2:
            metrics["answer_class_accuracy"] = ("cls_correct", "weight")
        return metrics

    # ------------------------------------------------------------------ data
    def split_path(self, data_dir, split):
        override = self.override_path(data_dir, split)
        if override:
            return override
        names = [f"{split}-v{self.version}.json"]
        tried = [os.path.join(data_dir, n) for n in names]
        tried += [os.path.join(data_dir, f"v{self.version}", n) for n in names]
        for path in tried:
            if tf.io.gfile.exists(path):
                return path
        raise FileNotFoundError(f"{self.name} {split}: none of {tried} exists")

    def load(self, data_dir, split, skip_malformed=False):
        data = squad_json.read_squad(self.split_path(data_dir, split),
                                     skip_malformed=skip_malformed)
        if data.allow_impossible and not self.v2:
            n = sum(ex.is_impossible for ex in data.examples)
            if n:
                raise TaskError(f"{data.source}: {n} unanswerable questions (is_impossible) in a "
                                f"SQuAD v1.1 task; use --task=squad_v2.0")
        return data

    def _train_features(self, data, tokenizer, hp, seed, shuffle=True, repeat=True):
        ds = text_squad.squad_feature_dataset(
            data.examples, tokenizer, seq_len=hp.max_seq_length, doc_stride=hp.doc_stride,
            max_query_length=hp.max_query_length, shuffle=shuffle, seed=seed, repeat=repeat)
        return ds.map(lambda f: {k: f[k] for k in TRAIN_KEYS})

    def train_dataset(self, examples, tokenizer, hp, seed, records=None):
        if records is not None:
            # One record per question ([K, L] windows): questions shuffled with the same seed as
            # the tokenizing path, then its windows in order.
            ds = records.dataset(shuffle_seed=seed, repeat=True).unbatch()
        else:
            ds = self._train_features(examples, tokenizer, hp, seed)
        # Windows of one question are adjacent; a window-level shuffle breaks that up.
        return ds.shuffle(2048, seed=seed)

    def record_options(self, hp):
        return {"max_seq_length": hp.max_seq_length, "doc_stride": hp.doc_stride,
                "max_query_length": hp.max_query_length}

    def train_units(self, examples, tokenizer, hp):
        ds = text_squad.squad_question_features(
            examples.examples, tokenizer, seq_len=hp.max_seq_length, doc_stride=hp.doc_stride,
            max_query_length=hp.max_query_length)
        return ds.map(lambda f: {k: f[k] for k in TRAIN_KEYS})

    def num_train_rows(self, examples, tokenizer, hp):
        """Number of windows (counted by running the in-graph feature builder once, on this
        process's CPU: see feature_records.on_local_host)."""
        from funnel_tf.text.feature_records import on_local_host

        with on_local_host():
            ds = self._train_features(examples, tokenizer, hp, 0, shuffle=False, repeat=False)
            return int(ds.reduce(0, lambda n, _: n + 1).numpy())

    def eval_data(self, examples, tokenizer, hp, global_batch, records=None):
        """The windows' features are built here, on this process's CPU, into numpy arrays (the
        answer post-processing needs them): the dataset fed to the model is made from those
        arrays and holds no tokenizer op, so SQuAD evaluation needs no feature records."""
        from funnel_tf.text.feature_records import on_local_host

        with on_local_host():
            features = text_squad.build_squad_features(
                examples.examples, tokenizer, seq_len=hp.max_seq_length,
                doc_stride=hp.doc_stride, max_query_length=hp.max_query_length)
        ds = features.to_dataset(pad_to_multiple_of=global_batch,
                                 keys=text_squad.MODEL_KEYS + ("example_weight", "example_index"))
        return EvalData(ds, examples, len(features), aux=features)

    # ------------------------------------------------------------------ model
    def build_model(self, config):
        return FunnelForSquad(config, answer_class=self.v2)

    def per_example_loss(self, model, features, training):
        out = model(self.model_inputs(features), training=training)
        start_pos = tf.cast(features["start_positions"], tf.int32)
        end_pos = tf.cast(features["end_positions"], tf.int32)
        start_ce, start_correct = cross_entropy_and_correct(out["start_logits"], start_pos)  # [B]
        end_ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=end_pos,
                                                                logits=out["end_logits"])
        loss = 0.5 * (start_ce + end_ce)
        stats = {"start_correct": start_correct}
        if self.v2:
            target = tf.cast(features["is_impossible"], tf.float32)
            bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=out["cls_logits"])
            loss = loss + 0.5 * bce
            stats["cls_correct"] = tf.cast(tf.equal(tf.cast(out["cls_logits"] > 0, tf.float32),
                                                    target), tf.float32)
        return loss, stats

    def predict(self, model, features):
        out = model(self.model_inputs(features), training=False)
        result = {"start_logits": out["start_logits"], "end_logits": out["end_logits"],
                  "example_index": features["example_index"]}
        if self.v2:
            result["cls_logits"] = out["cls_logits"]
        return result

    # ------------------------------------------------------------------ results
    def _answers(self, data: EvalData, outputs, hp: Hparams, null_threshold=None):
        return text_squad.postprocess_predictions(
            data.examples.examples, data.aux, outputs["start_logits"], outputs["end_logits"],
            outputs.get("cls_logits"), n_best=hp.n_best, max_answer_length=hp.max_answer_length,
            null_threshold=null_threshold, allow_impossible=self.v2)

    @staticmethod
    def gold_dataset(data) -> dict:
        """The parsed questions as an official-format dataset (exactly the questions predicted,
        also when malformed ones were skipped)."""
        qas = [{"id": ex.qas_id, "answers": [{"text": t, "answer_start": s} for t, s in ex.answers]}
               for ex in data.examples]
        return {"version": data.version, "data": [{"title": "", "paragraphs": [{"qas": qas}]}]}

    def compute_metrics(self, split, data, outputs, hp):
        predictions, null_odds = self._answers(data, outputs, hp)
        gold = self.gold_dataset(data.examples)
        if self.v2:
            return squad_metrics.evaluate_v2(gold, predictions, null_odds=null_odds)
        return squad_metrics.evaluate_v1(gold, predictions)

    def write_predictions(self, split, data, outputs, hp, out_dir) -> List[str]:
        """`predictions.json` ({id: best non-null answer}, as the original writes it so the v2.0
        evaluator can search the null threshold with `null_odds.json`); for v2.0 also
        `null_odds.json` and `predictions_thresholded.json` ("" where odds > the dev set's best
        threshold when labels are available, else > 0). Files are prefixed `<split>_` unless
        split is "dev" (the only public evaluation set)."""
        predictions, null_odds = self._answers(data, outputs, hp)
        prefix = "" if split == "dev" else f"{split}_"
        paths = [os.path.join(out_dir, f"{prefix}predictions.json")]
        atomic_write_json(paths[0], predictions)
        if self.v2:
            threshold = 0.0
            has_answers = any(ex.answers for ex in data.examples.examples)
            if has_answers:
                metrics = squad_metrics.evaluate_v2(self.gold_dataset(data.examples), predictions,
                                                    null_odds=null_odds)
                threshold = float(metrics["best_f1_thresh"])
            thresholded = {q: ("" if null_odds[q] > threshold else a)
                           for q, a in predictions.items()}
            for name, obj in (("null_odds.json", null_odds),
                              ("predictions_thresholded.json", thresholded)):
                paths.append(os.path.join(out_dir, prefix + name))
                atomic_write_json(paths[-1], obj)
        return paths

    # ------------------------------------------------------------------ export
    def serving_module(self, model, tokenizer, hp):
        from funnel_tf.export import QuestionAnsweringServing

        return QuestionAnsweringServing(model, tokenizer, hp.max_seq_length, hp.max_query_length,
                                        hp.max_answer_length, allow_impossible=self.v2)

    def task_info(self, hp):
        info = super().task_info(hp)
        info.update(version=self.version, doc_stride=hp.doc_stride,
                    max_query_length=hp.max_query_length, max_answer_length=hp.max_answer_length)
        return info

