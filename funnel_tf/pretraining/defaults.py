"""Settings a pretraining run takes for what it is not told: the embedded demo (no train_data)
and a real run, scaled to short runs where the user chose nothing (`fill_defaults`), and the
error for settings that cannot work. Kept free of TensorFlow so
`pretrain.py --help` and its flag errors come at once."""

from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Tuple

from funnel_tf import resources
from funnel_tf.errors import UserError

# The shipped demo corpus and vocab: package data in a wheel, data/ in a checkout.
DEMO_CORPUS = resources.demo_corpus_path()
DEMO_VOCAB = resources.demo_vocab_path()

DEMO_DEFAULTS = dict(config="tiny", objective="mlm", seq_len=64, batch_size=16, train_steps=300,
                     learning_rate=1e-3, warmup_steps=30, steps_per_loop=25, log_every=25,
                     save_every=100, strategy="default")
RUN_DEFAULTS = dict(config="small", objective="mlm", seq_len=512, batch_size=256,
                    train_steps=1_000_000, learning_rate=1e-4, warmup_steps=10_000,
                    steps_per_loop=200, log_every=200, save_every=5_000, strategy="default")


class PretrainArgsError(UserError, ValueError):
    """A pretraining setting that cannot work; the message names the flag and what is allowed."""


def _manifest_seq_len(a) -> Optional[int]:
    """The seq_len in the manifest.json beside record --train_data (no TF op: gfile only)."""
    from funnel_tf.pretraining import inputs  # TensorFlow: not for `--help` and flag errors

    if a.demo or a.train_data_format == "text":
        return None
    try:  # input that cannot be read is refused, after the flags, by plan_pretraining_input
        files = inputs.expand(a.train_data)
        fmt = inputs.detect_format(files) if a.train_data_format == "auto" else \
            a.train_data_format
    except UserError:
        return None
    files = [f for f in files if os.path.basename(f) != inputs.pretraining.MANIFEST_NAME]
    if fmt != "tfrecord" or not files:
        return None
    try:
        manifest = inputs.read_manifest(files) or {}
    except UserError:
        return None
    seq_len = manifest.get("seq_len")
    return seq_len if isinstance(seq_len, int) and not isinstance(seq_len, bool) else None


def fill_defaults(args, saved: Optional[dict] = None) -> Tuple[object, List[str]]:
    """`args.with_defaults()` (a PretrainArgs), scaled to the run where the user chose nothing, and one line per
    choice for the log. seq_len: the records' manifest's (a different --seq_len is refused when
    the input is checked). warmup: the resumed run's (`saved`, its run record), else
    min(default, 10% of train_steps). steps_per_loop / log_every: min(default,
    max(1, train_steps // 10)); save_every, when the default would save only at the end:
    max(1, train_steps // 4). So a short run reports and checkpoints as it goes."""
    notes = []
    if args.seq_len is None:
        seq_len = _manifest_seq_len(args)
        if seq_len is not None:
            args = dataclasses.replace(args, seq_len=seq_len)
            notes.append(f"seq_len {seq_len} (from the records' manifest.json)")
    a = args.with_defaults()
    steps = a.train_steps
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        return a, notes  # check_args refuses it
    scaled = {}
    if args.warmup_steps is None:
        recorded = ((saved or {}).get("defining") or {}).get("warmup_steps")
        if isinstance(recorded, int):
            scaled["warmup_steps"] = (recorded, "the resumed run's")
        else:
            scaled["warmup_steps"] = (min(a.warmup_steps, steps // 10), "10% of train_steps")
    for name in ("steps_per_loop", "log_every"):
        if getattr(args, name) is None:
            scaled[name] = (min(getattr(a, name), max(1, steps // 10)), "train_steps // 10")
    if args.save_every is None and a.save_every >= steps:  # else no checkpoint before the end
        scaled["save_every"] = (max(1, steps // 4), "train_steps // 4")
    for name, (value, why) in scaled.items():
        if value != getattr(a, name):
            notes.append(f"{name} {value} ({why}; default {getattr(a, name)}, pass --{name} to "
                         f"choose)")
    return dataclasses.replace(a, **{k: v for k, (v, _) in scaled.items()}), notes
