"""Fixtures for the run tests (a pytest plugin of tests/conftest.py): the shipped demo vocab (fast, no shared data needed) and a micro
config small enough that building and running a model takes a fraction of a second."""

import os
import sys

import pytest

from funnel_tf.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_VOCAB = os.path.join(REPO, "data", "demo_vocab.txt")


@pytest.fixture(scope="session")
def demo_tokenizer():
    from funnel_tf.text.wordpiece import WordpieceTokenizer

    return WordpieceTokenizer(DEMO_VOCAB)


@pytest.fixture(scope="session")
def micro_config(demo_tokenizer):
    """3 blocks of 1 layer, d_model 32, 2-layer decoder, the demo vocab; dropout off so that
    repeated calls agree exactly."""
    return load_config("tiny").replace(
        vocab_size=demo_tokenizer.vocab_size, block_sizes=[1, 1, 1], d_model=32, n_head=2,
        d_head=16, d_inner=64, hidden_dropout=0.0, attention_dropout=0.0)


@pytest.fixture
def finetune_main():
    """finetune.py's main(argv), in-process, with flags parsed from a list (reset afterwards)."""
    sys.path.insert(0, REPO)
    import finetune

    def call(*args):
        finetune.FLAGS.unparse_flags()
        finetune.FLAGS(["finetune.py", *map(str, args)])
        return finetune.main(["finetune.py"])

    yield call
    finetune.FLAGS.unparse_flags()
    sys.path.remove(REPO)
