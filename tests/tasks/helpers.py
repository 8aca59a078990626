"""Small task folders and run arguments shared by the finetuning-run tests (in-process, fast)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from typing import Dict, Tuple

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


def session_folder(tmp_path_factory, name: str, build) -> str:
    """A folder built once per pytest session and shared by every module and xdist worker: the
    first caller runs `build(folder)` under a file lock in the session's temp root, the others
    wait for it and read the finished folder (never write into it)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' common root
    folder = os.path.join(str(root), name)
    with open(folder + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(folder, ".built")):
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed in another module
            build(folder)
            open(os.path.join(folder, ".built"), "w").close()
    return folder


def uninterrupted_csv_args(folder: str, model_dir: str) -> FinetuneArgs:
    """The FinetuneArgs of `uninterrupted_csv_run` (its task files and config in `folder`)."""
    files = {split: os.path.join(folder, "data", f"{split}.tsv") for split in ("train", "dev", "test")}
    return csv_args(model_dir, files, os.path.join(folder, "micro.json"), do_predict=True,
                    hparams=dict(epochs=2.0), run=dict(steps_per_loop=4))


def uninterrupted_csv_run(tmp_path_factory, micro_config) -> Tuple[str, dict, list]:
    """One finished 12-step csv run (96 rows, batch 16, 2 epochs, evaluated at steps 6 and 12,
    test split predicted), trained once per session for the modules that read it (test_runner,
    test_preemption); returns (folder, summary, argv): the run is <folder>/run, its task files
    <folder>/data, and `argv` are finetune.py's flags for it (plus --model_dir)."""
    def build(folder):
        config_path = os.path.join(folder, "micro.json")
        os.makedirs(folder)
        micro_config.save(config_path)
        write_csv_task(os.path.join(folder, "data"))
        from funnel_tf.finetuning.run import run_finetuning

        summary = run_finetuning(uninterrupted_csv_args(folder, os.path.join(folder, "run")))
        with open(os.path.join(folder, "summary.json"), "w") as f:
            json.dump({k: v for k, v in summary.items() if k != "hparams"}, f, default=str)

    folder = session_folder(tmp_path_factory, "uninterrupted_csv_run", build)
    with open(os.path.join(folder, "summary.json")) as f:
        summary = json.load(f)
    files = uninterrupted_csv_args(folder, "").files
    argv = ["--task=csv", f"--train_file={files['train']}", f"--dev_file={files['dev']}",
            f"--test_file={files['test']}", "--text_a_column=text", "--label_column=label",
            f"--config={os.path.join(folder, 'micro.json')}", f"--vocab_file={DEMO_VOCAB}",
            "--do_train", "--do_eval", "--do_predict", "--batch_size=16", "--epochs=2",
            "--max_seq_length=16", "--learning_rate=3e-3", "--steps_per_loop=4", "--log_every=2"]
    return folder, summary, argv
