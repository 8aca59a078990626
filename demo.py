"""The whole pipeline on CPU in a few minutes: tiny pretrain -> finetune -> predict -> export.

    python demo.py                    # outputs under a fresh temp folder (printed at the end)
    python demo.py --out_dir=demo_out --pretrain_steps=300

1. pretrain.py's embedded demo (`run_pretraining` with its demo defaults, in this process): a
   tiny funnel (MLM) on the shipped corpus data/demo_corpus.txt with its vocab
   data/demo_vocab.txt.
2. A small sentence-polarity task generated here from templates (our own text: "the evening was
   not warm and ..."; label = polarity of the adjective, flipped by "not"), written as TSVs and
   read through the generic `csv` task.
3. finetune (warm-started from step 1) with evaluation every epoch keeping the best model, test
   predictions, and a SavedModel with in-graph tokenization, which is then reloaded and queried
   with raw sentences.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time

from absl import app, flags, logging

from funnel_tf.cli import main_with_user_errors
from funnel_tf.logs import quiet_tensorflow
from funnel_tf.pretraining.defaults import DEMO_VOCAB

flags.DEFINE_string("out_dir", None, "Folder for every output (default: a new temp folder).")
flags.DEFINE_integer("pretrain_steps", 300, "Pretraining steps (pretrain.py's demo default).")
flags.DEFINE_float("finetune_epochs", 6.0, "Finetuning epochs on the generated task.")
flags.DEFINE_integer("num_train", 1200, "Generated training sentences.")
flags.DEFINE_integer("seed", 0, "Seed of the generated data.")
FLAGS = flags.FLAGS

POSITIVE = ("warm", "bright", "good", "clean", "fresh", "quiet", "steady", "better", "best",
            "careful", "useful", "green")
NEGATIVE = ("cold", "dark", "broken", "worse", "heavy", "tired", "wet", "empty", "strange",
            "loose", "thin", "pale")
SUBJECTS = ("the evening", "the river", "the garden", "the harbor", "the library", "the village",
            "the bread", "the street", "the boat", "the room", "the market", "the weather")
TAILS = ("and the children walked home", "before the train came", "while the lamps were lit",
         "so we stayed near the window", "after the long winter", "by the time the moon rose",
         "and the neighbors gathered", "as the tides turned", "", "")


def make_sentence(rng: random.Random):
    """(sentence, label): label 1 when the sentence says something good."""
    positive = rng.random() < 0.5
    adjective = rng.choice(POSITIVE if positive else NEGATIVE)
    negated = rng.random() < 0.3
    verb = rng.choice(("was", "is", "seemed", "felt"))
    text = f"{rng.choice(SUBJECTS)} {verb} {'not ' if negated else ''}{adjective}"
    tail = rng.choice(TAILS)
    if tail:
        text += " " + tail
    return text + ".", int(positive != negated)


def write_task(folder: str, num_train: int, seed: int) -> dict:
    """train/dev/test TSVs (`sentence<TAB>label`, labels neg/pos) of generated sentences."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    sizes = {"train": num_train, "dev": max(num_train // 5, 64), "test": max(num_train // 5, 64)}
    paths = {}
    for split, n in sizes.items():
        paths[split] = os.path.join(folder, f"{split}.tsv")
        with open(paths[split], "w", encoding="utf-8") as f:
            f.write("sentence\tlabel\n")
            for _ in range(n):
                text, label = make_sentence(rng)
                f.write(f"{text}\t{('neg', 'pos')[label]}\n")
    return paths


def pretrain(model_dir: str, steps: int) -> float:
    """pretrain.py's demo (tiny MLM on the shipped corpus): `run_pretraining` with the demo
    defaults, its progress log kept quiet as when pretrain.py ran in a subprocess here."""
    from funnel_tf.pretraining.args import PretrainArgs
    from funnel_tf.pretraining.run import format_summary, run_pretraining

    t0 = time.time()
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.WARNING)
    try:
        result = run_pretraining(PretrainArgs(model_dir=model_dir, train_steps=steps,
                                              save_every=steps))
    finally:
        logging.set_verbosity(verbosity)
    tail = [line for line in format_summary(result).splitlines()
            if line.startswith(("loss", "finished"))]
    print("  " + "\n  ".join(tail))
    if result.exit_code:
        raise _Interrupted(result.exit_code)
    return time.time() - t0


class _Interrupted(Exception):
    """A stage was preempted (SIGTERM / Ctrl-C): its checkpoint is saved, nothing later runs."""

    def __init__(self, exit_code: int):
        super().__init__(exit_code)
        self.exit_code = exit_code


def _stopped(out: str, exit_code: int) -> int:
    print(f"demo.py: interrupted; checkpoints are saved in {out}: rerun with --out_dir={out} to "
          f"resume", file=sys.stderr)
    return exit_code


@main_with_user_errors("demo.py")
def main(argv):
    del argv
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops a SavedModel needs)

    from funnel_tf.finetuning.args import FinetuneArgs
    from funnel_tf.finetuning.run import run_finetuning

    out = FLAGS.out_dir or tempfile.mkdtemp(prefix="funnel_demo_")
    os.makedirs(out, exist_ok=True)
    t_start = time.time()

    print(f"[1/4] pretraining a tiny funnel on data/demo_corpus.txt ({FLAGS.pretrain_steps} "
          f"steps) ...")
    pretrain_dir = os.path.join(out, "pretrain")
    try:
        pretrain_secs = pretrain(pretrain_dir, FLAGS.pretrain_steps)
    except _Interrupted as stop:
        return _stopped(out, stop.exit_code)

    print("[2/4] generating the sentence-polarity task ...")
    files = write_task(os.path.join(out, "data"), FLAGS.num_train, FLAGS.seed)

    print("[3/4] finetuning (eval every epoch, best model kept), predicting the test split, "
          "exporting ...")
    export_dir = os.path.join(out, "export")
    t0 = time.time()
    summary = run_finetuning(FinetuneArgs(
        task="csv", model_dir=os.path.join(out, "finetune"), files=files,
        csv_options=dict(text_a_column="sentence", label_column="label",
                         label_names=["neg", "pos"]),
        init_checkpoint=pretrain_dir, vocab_file=DEMO_VOCAB, do_train=True, do_eval=True,
        do_predict=True, export_dir=export_dir, overwrite_export=True,
        hparams=dict(batch_size=32, learning_rate=5e-4, epochs=FLAGS.finetune_epochs,
                     max_seq_length=32),
        run=dict(log_every=20, steps_per_loop=20)))
    finetune_secs = time.time() - t0
    if summary.get("preempted"):
        return _stopped(out, 75)

    print("[4/4] reloading the SavedModel and classifying raw sentences ...")
    loaded = tf.saved_model.load(export_dir)
    serve = loaded.signatures["serving_default"]
    queries = ["the harbor was warm and the neighbors gathered.",
               "the bread seemed not fresh.", "the street felt dark before the train came."]
    result = serve(text=tf.constant(queries))
    best = summary.get("best") or {}
    print("\n=== demo results ===")
    for e in summary.get("evaluations", []):
        print(f"  dev accuracy after epoch {e['epoch']:.1f} (step {e['step']}): "
              f"{e['accuracy']:.4f}")
    print(f"  best dev accuracy {best.get('value', float('nan')):.4f} at step {best.get('step')}")
    for split, paths in summary.get("predictions", {}).items():
        print(f"  {split} predictions: {', '.join(paths)}")
    print(f"  SavedModel: {export_dir}")
    for q, label, p in zip(queries, result["label"].numpy(), result["probabilities"].numpy()):
        print(f"    {label.decode():3s} (p_pos {p[1]:.3f})  {q}")
    print(f"  time: pretrain {pretrain_secs:.0f}s, finetune+predict+export {finetune_secs:.0f}s, "
          f"total {time.time() - t_start:.0f}s; everything is in {out}")
    with open(os.path.join(out, "demo_summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, default=str)
    logging.info("done")


if __name__ == "__main__":
    quiet_tensorflow()  # before TF loads; keeps a TF_CPP_MIN_LOG_LEVEL the user set
    app.run(main)
