"""RACE multiple-choice reader: one JSON file per passage → 4-way fixed-shape features.

Layout of the original download: `RACE/{train,dev,test}/{middle,high}/*.txt`, each file one JSON
object `{"answers": ["C", ...], "options": [[4 strings], ...], "questions": [...],
"article": "...", "id": "high80.txt"}`.

Every question becomes one example of 4 sequences `[CLS] QA [SEP] passage [SEP]`, as the original
`race.py`: QA = the question with every `_` (cloze blank) replaced by the option, else
`question + " " + option`; QA keeps its *last* `max_qa_length` (128) tokens, the passage is cut at
its end to fit; token types CLS 2, QA 0, passage 1. Features per example: input_ids /
attention_mask / token_type_ids [4, seq_len] int32, label [] int32 (0..3 from "A".."D"),
is_high [] int32 (1 high, 0 middle; for per-level accuracy), example_weight [] float32,
example_index [] int32. Tokenization runs in-graph.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from funnel_tf.text.errors import DataFormatError, MalformedCounter

NUM_OPTIONS = 4
LEVELS = ("middle", "high")
_LETTERS = "ABCD"


@dataclasses.dataclass
class RaceExamples:
    """Parsed RACE questions: article, 4 QA strings, label index, level and id per question."""

    articles: List[str]
    qa: List[List[str]]           # [N][4]
    labels: np.ndarray            # int32 [N]
    levels: List[str]             # "middle" | "high"
    ids: List[str]                # "<split>/<level>/<file>#<question index>"
    num_skipped: int = 0
    source: str = ""

    def __len__(self) -> int:
        return len(self.articles)

    def level_counts(self):
        return {lvl: self.levels.count(lvl) for lvl in LEVELS}


def build_qa(question: str, option: str) -> str:
    """The original's QA string: fill the `_` blank(s) with the option, else append it."""
    if "_" in question:
        return question.replace("_", option)
    return question + " " + option


def _race_root(data_dir: str, split: str) -> str:
    for root in (data_dir, os.path.join(data_dir, "RACE")):
        if tf.io.gfile.isdir(os.path.join(root, split)):
            return root
    raise FileNotFoundError(f"RACE split folder {split!r} not found under {data_dir} "
                            f"(expected {data_dir}/[RACE/]{split}/{{middle,high}}/*.txt)")


def read_race_file(path: str, level: str, id_prefix: str, counter: MalformedCounter
                   ) -> RaceExamples:
    """Parses one RACE JSON file; malformed files or questions go through `counter`."""
    out = RaceExamples(articles=[], qa=[], labels=np.zeros([0], np.int32), levels=[], ids=[],
                      source=path)
    labels = []
    with tf.io.gfile.GFile(path, "rb") as f:
        raw = f.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        counter.report(DataFormatError(f"not valid UTF-8: {e.reason}", path,
                                       raw[:e.start].count(b"\n") + 1))
        return out
    except json.JSONDecodeError as e:
        counter.report(DataFormatError(f"bad JSON: {e.msg} (column {e.colno})", path, e.lineno))
        return out
    if not isinstance(data, dict):
        counter.report(DataFormatError("expected a JSON object", path, 1))
        return out
    missing = [k for k in ("answers", "options", "questions", "article") if k not in data]
    if missing:
        counter.report(DataFormatError(f"missing key(s) {missing}", path))
        return out
    answers, options, questions, article = (data["answers"], data["options"], data["questions"],
                                            data["article"])
    if not (isinstance(answers, list) and isinstance(options, list)
            and isinstance(questions, list) and isinstance(article, str)):
        counter.report(DataFormatError("answers/options/questions must be lists and article a "
                                       "string", path))
        return out
    if not len(answers) == len(options) == len(questions):
        counter.report(DataFormatError(
            f"{len(questions)} questions, {len(options)} option lists and {len(answers)} answers "
            f"do not line up", path))
        return out
    for i, (question, opts, answer) in enumerate(zip(questions, options, answers)):
        qid = f"{id_prefix}#{i}"
        if not (isinstance(opts, list) and len(opts) == NUM_OPTIONS
                and all(isinstance(o, str) for o in opts)):
            counter.report(DataFormatError(
                f"question {i}: expected {NUM_OPTIONS} option strings, got {opts!r:.80}", path,
                example_id=qid))
            continue
        if not isinstance(question, str):
            counter.report(DataFormatError(f"question {i} is not a string", path, example_id=qid))
            continue
        if not (isinstance(answer, str) and len(answer) == 1 and answer in _LETTERS):
            counter.report(DataFormatError(f"question {i}: answer {answer!r} is not one of A-D",
                                           path, example_id=qid))
            continue
        out.articles.append(article)
        out.qa.append([build_qa(question, o) for o in opts])
        labels.append(_LETTERS.index(answer))
        out.levels.append(level)
        out.ids.append(qid)
    out.labels = np.asarray(labels, np.int32)
    return out


def load_race(data_dir: str, split: str, *, levels: Sequence[str] = LEVELS,
              skip_malformed: bool = False) -> RaceExamples:
    """All questions of `split` (files sorted by name; middle before high as in the original)."""
    root = _race_root(data_dir, split)
    counter = MalformedCounter(skip_malformed)
    parts = []
    for level in levels:
        if level not in LEVELS:
            raise ValueError(f"unknown RACE level {level!r}; expected {LEVELS}")
        folder = os.path.join(root, split, level)
        if not tf.io.gfile.isdir(folder):
            raise FileNotFoundError(f"RACE folder {folder} not found")
        for name in sorted(tf.io.gfile.listdir(folder)):
            if name.startswith("."):
                continue
            parts.append(read_race_file(os.path.join(folder, name), level,
                                        f"{split}/{level}/{name}", counter))
    counter.log(f"RACE {split}")
    result = RaceExamples(
        articles=[a for p in parts for a in p.articles], qa=[q for p in parts for q in p.qa],
        labels=np.concatenate([p.labels for p in parts]) if parts else np.zeros([0], np.int32),
        levels=[lvl for p in parts for lvl in p.levels], ids=[i for p in parts for i in p.ids],
        num_skipped=counter.count, source=os.path.join(root, split))
    if not len(result):
        raise DataFormatError(f"no RACE questions found in split {split!r}", path=root)
    return result


def encode_race_batch(tokenizer, articles: tf.Tensor, qa: tf.Tensor, seq_len: int,
                      max_qa_length: int = 128):
    """In-graph features: articles string [b], qa string [b, 4] → dict of int32 [b, 4, seq_len]."""
    from funnel_tf.text.packing import pack_inputs

    b = tf.shape(articles)[0]
    qa_ids = tokenizer.tokenize(tf.reshape(qa, [-1]))[:, -max_qa_length:]       # [b*4, (<=q)]
    passage = tokenizer.tokenize(articles)                                     # [b, (t)]
    passage = tf.gather(passage, tf.repeat(tf.range(b), NUM_OPTIONS))          # [b*4, (t)]
    packed = pack_inputs(qa_ids, passage, seq_len, tokenizer.cls_id, tokenizer.sep_id,
                         pad_id=tokenizer.pad_id, truncation="keep_tail_a")
    return {k: tf.reshape(tf.cast(v, tf.int32), [-1, NUM_OPTIONS, seq_len])
            for k, v in packed.items()}


def encode_race_examples(examples: RaceExamples, tokenizer, seq_len: int = 512, *,
                         max_qa_length: int = 128, batch_size: Optional[int] = None,
                         pad_to_multiple_of: Optional[int] = None, shuffle: bool = False,
                         seed: Optional[int] = None, repeat: bool = False,
                         tokenize_chunk: int = 64) -> tf.data.Dataset:
    """Dataset of fixed-shape 4-way features (see module doc); padding examples have weight 0."""
    if not 0 < max_qa_length <= seq_len - 4:
        raise ValueError(f"max_qa_length={max_qa_length} must be in [1, seq_len - 4 = "
                         f"{seq_len - 4}] so the passage keeps at least one token")
    n = len(examples)
    n_pad = (-n) % pad_to_multiple_of if pad_to_multiple_of else 0
    columns = {
        "article": np.array(examples.articles + [""] * n_pad, dtype=object),
        "qa": np.array(examples.qa + [[""] * NUM_OPTIONS] * n_pad, dtype=object),
        "label": np.concatenate([examples.labels, np.zeros([n_pad], np.int32)]),
        "is_high": np.array([int(lvl == "high") for lvl in examples.levels] + [0] * n_pad,
                            np.int32),
        "example_weight": np.concatenate([np.ones([n], np.float32), np.zeros([n_pad], np.float32)]),
        "example_index": np.concatenate([np.arange(n, dtype=np.int32),
                                         np.full([n_pad], -1, np.int32)]),
    }
    from funnel_tf.text.packing import traced_per_tokenizer

    ds = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle:
        ds = ds.shuffle(n + n_pad, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def make(get_tokenizer):
        def encode(batch):
            out = encode_race_batch(get_tokenizer(), batch["article"], batch["qa"], seq_len,
                                    max_qa_length)
            out = {k: tf.ensure_shape(v, [None, NUM_OPTIONS, seq_len])  # [b, 4, seq_len]
                   for k, v in out.items()}
            for k in ("label", "is_high", "example_weight", "example_index"):
                out[k] = batch[k]
            return out
        return encode

    # One trace per tokenizer, lengths and input signature, shared by the run's datasets.
    encode = traced_per_tokenizer(tokenizer, ("race", seq_len, max_qa_length), make)
    ds = ds.batch(tokenize_chunk).map(encode, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    if batch_size:
        ds = ds.batch(batch_size, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)

