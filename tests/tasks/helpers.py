"""Small task folders and run arguments shared by the finetuning-run tests (in-process, fast)."""

from __future__ import annotations

import os
from typing import Dict

import numpy as np

from funnel_tf.finetuning.args import FinetuneArgs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_VOCAB = os.path.join(REPO, "data", "demo_vocab.txt")
WORDS = "the river old stone bridge near village warm cold boat harbor lamp".split()
CSV_OPTIONS = {"text_a_column": "text", "label_column": "label"}


def csv_rows(n: int, seed: int = 0) -> str:
    """`n` labelled rows of a two-class sentence task ("pos" iff the text says "warm")."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        text = " ".join(rng.choice(WORDS, size=rng.integers(3, 9)))
        rows.append(f"{text}\t{'pos' if 'warm' in text.split() else 'neg'}\n")
    return "".join(rows)


def write_csv_task(folder: str, n_train: int = 96, n_dev: int = 24,
                   n_test: int = 24) -> Dict[str, str]:
    """train/dev/test .tsv files with a header under `folder`; returns {split: path}."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for split, n, seed in (("train", n_train, 1), ("dev", n_dev, 2), ("test", n_test, 3)):
        paths[split] = os.path.join(folder, f"{split}.tsv")
        with open(paths[split], "w") as f:
            f.write("text\tlabel\n" + csv_rows(n, seed))
    return paths


def csv_args(model_dir: str, files: Dict[str, str], config_path: str, **overrides) -> FinetuneArgs:
    """A short csv-task run (batch 16, seq 16) on the demo vocab; `overrides` replace fields,
    `hparams=` / `run=` dicts are merged into the defaults."""
    hparams = dict(batch_size=16, epochs=1.0, max_seq_length=16, learning_rate=3e-3)
    hparams.update(overrides.pop("hparams", {}))
    run = dict(log_every=2, steps_per_loop=2)
    run.update(overrides.pop("run", {}))
    fields = dict(task="csv", model_dir=model_dir, files=files, config=config_path,
                  vocab_file=DEMO_VOCAB, csv_options=dict(CSV_OPTIONS), hparams=hparams, run=run)
    fields.update(overrides)
    return FinetuneArgs(**fields)
