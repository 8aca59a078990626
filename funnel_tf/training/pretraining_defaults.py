"""Settings a pretraining run takes for what it is not told: the embedded demo (no train_data)
and a real run, and the error for settings that cannot work. Kept free of TensorFlow so
`pretrain.py --help` and its flag errors come at once."""

from __future__ import annotations

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
