"""RACE reading comprehension: 4-way multiple choice on the encoder only, as the paper.

Each question is 4 sequences `[CLS] QA [SEP] passage [SEP]` (text/race.py); the encoder reads the
[B*4, L] batch, the CLS summary gives one score per option (FunnelForMultipleChoice) and the loss
is softmax cross-entropy over the 4 scores. Metrics: accuracy overall, middle and high school.
`--do_predict` writes `race_<split>_answers.json` ({question id: "A".."D"}).
"""

from __future__ import annotations

import os
from typing import List

import numpy as np
import tensorflow as tf

from funnel_tf.metrics import race as race_metrics
from funnel_tf.modeling.heads import FunnelForMultipleChoice
from funnel_tf.tasks.base import EvalData, FinetuningTask, atomic_write_json, rows_by_example
from funnel_tf.tasks.losses import cross_entropy_and_correct
from funnel_tf.text import race as text_race

_LETTERS = "ABCD"


class RaceTask(FinetuningTask):
    """RACE from the original download:
    `<data_dir>/[RACE/]{train,dev,test}/{middle,high}/*.txt`."""

    name = "race"
    defaults_key = "race"
    main_metric = race_metrics.MAIN_METRIC
    eval_splits = ("dev",)
    predict_splits = ("test",)

    def split_path(self, data_dir, split):
        override = self.override_path(data_dir, split)
        if override:
            return override
        for root in (data_dir, os.path.join(data_dir, "RACE")):
            path = os.path.join(root, split)
            if tf.io.gfile.isdir(path):
                missing = [lvl for lvl in text_race.LEVELS
                           if not tf.io.gfile.isdir(os.path.join(path, lvl))]
                if missing:
                    raise FileNotFoundError(f"RACE {split}: {path} lacks the level folder(s) "
                                            f"{missing}")
                return path
        raise FileNotFoundError(f"RACE {split}: no {split}/ folder under {data_dir} or "
                                f"{os.path.join(data_dir, 'RACE')}")

    def load(self, data_dir, split, skip_malformed=False):
        path = self.split_path(data_dir, split)
        # load_race wants (root, split name); an overridden folder is its own root/split.
        return text_race.load_race(os.path.dirname(path.rstrip("/")),
                                   os.path.basename(path.rstrip("/")),
                                   skip_malformed=skip_malformed)

    def tokens_per_row(self, hp):
        return hp.max_seq_length * text_race.NUM_OPTIONS

    def train_dataset(self, examples, tokenizer, hp, seed, records=None):
        if records is not None:  # the questions shuffled with the same seed, then repeated
            return records.dataset(shuffle_seed=seed, repeat=True)
        return text_race.encode_race_examples(examples, tokenizer, hp.max_seq_length,
                                              max_qa_length=hp.max_qa_length, shuffle=True,
                                              seed=seed, repeat=True)

    def record_options(self, hp):
        return {"max_seq_length": hp.max_seq_length, "max_qa_length": hp.max_qa_length}

    def train_units(self, examples, tokenizer, hp):
        return text_race.encode_race_examples(examples, tokenizer, hp.max_seq_length,
                                              max_qa_length=hp.max_qa_length)

    def eval_units(self, examples, tokenizer, hp, global_batch):
        return text_race.encode_race_examples(examples, tokenizer, hp.max_seq_length,
                                              max_qa_length=hp.max_qa_length,
                                              pad_to_multiple_of=global_batch)

    def eval_data(self, examples, tokenizer, hp, global_batch, records=None):
        ds = None if records is not None else self.eval_units(examples, tokenizer, hp,
                                                              global_batch)
        return EvalData(ds, examples, len(examples), records=records)

    def build_model(self, config):
        return FunnelForMultipleChoice(config, name="multiple_choice_model")

    def per_example_loss(self, model, features, training):
        logits = model(self.model_inputs(features), training=training)["logits"]   # [B, 4]
        ce, correct = cross_entropy_and_correct(logits, features["label"])     # [B] each
        return ce, {"correct": correct}

    def predict(self, model, features):
        logits = model(self.model_inputs(features), training=False)["logits"]
        return {"logits": logits, "example_index": features["example_index"]}

    def compute_metrics(self, split, data, outputs, hp):
        rows = rows_by_example(outputs, data.num_rows)
        ex = data.examples
        return race_metrics.compute_race_metrics(np.argmax(rows["logits"], -1), ex.labels,
                                                 ex.levels)

    def write_predictions(self, split, data, outputs, hp, out_dir) -> List[str]:
        rows = rows_by_example(outputs, data.num_rows)
        answers = {qid: _LETTERS[int(i)]
                   for qid, i in zip(data.examples.ids, np.argmax(rows["logits"], -1))}
        path = os.path.join(out_dir, f"race_{split}_answers.json")
        atomic_write_json(path, answers)
        return [path]

    def serving_module(self, model, tokenizer, hp):
        from funnel_tf.export import MultipleChoiceServing

        return MultipleChoiceServing(model, tokenizer, hp.max_seq_length, hp.max_qa_length)

    def task_info(self, hp):
        info = super().task_info(hp)
        info.update(max_qa_length=hp.max_qa_length, num_options=text_race.NUM_OPTIONS)
        return info
