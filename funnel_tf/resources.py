"""Files that ship with funnel_tf: the model configs and the demo corpus / vocab.

In a wheel they are package data (`funnel_tf/configs/`, `funnel_tf/demo_data/`, mapped from the
repo's `configs/` and `data/` by setup.py); in a checkout they are read from those repo folders.
Library code asks here instead of building paths from `__file__`.
"""

import os

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_PACKAGE)


def _shipped(package_name: str, repo_name: str) -> str:
    """The installed package-data folder if present, else the checkout's folder."""
    installed = os.path.join(_PACKAGE, package_name)
    return installed if os.path.isdir(installed) else os.path.join(_REPO, repo_name)


def configs_dir() -> str:
    """Folder of the published model configs (small.json, small-base.json, ..., tiny.json)."""
    return _shipped("configs", "configs")


def demo_data_dir() -> str:
    """Folder of the demo corpus and its vocab."""
    return _shipped("demo_data", "data")


def demo_corpus_path() -> str:
    """The shipped demo pretraining corpus (text the project wrote)."""
    return os.path.join(demo_data_dir(), "demo_corpus.txt")


def demo_vocab_path() -> str:
    """The WordPiece vocab built from the demo corpus (BERT special tokens, 919 entries)."""
    return os.path.join(demo_data_dir(), "demo_vocab.txt")


__all__ = ["configs_dir", "demo_data_dir", "demo_corpus_path", "demo_vocab_path"]
