"""Learn a WordPiece ``vocab.txt`` from plain text with tensorflow-text's vocab learner.

tf-text's ``bert_vocab_from_dataset`` splits words with its own ``BasicTokenizer`` (ICU
NFKC-casefold), which differs from BERT's normalisation (see ``wordpiece.py``). We therefore
count words with our ``BertNormalizer`` (so the vocab fits the words our tokenizer will look up)
and hand the counts to the same learner that ``bert_vocab_from_dataset`` calls,
``wordpiece_tokenizer_learner_lib.learn``.

Special-token layouts:
- ``bert``: BERT's ids: [PAD]=0, [unused0..98]=1..99, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103
  (so configs and tests written for BERT ids work unchanged);
- ``compact``: [PAD] [UNK] [CLS] [SEP] [MASK] = 0..4 (our tokenizer looks ids up by name anyway).
"""

from __future__ import annotations

import collections
import os
import sys
import time
from typing import Callable, List, Optional, Sequence

import tensorflow as tf
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

from funnel_tf.errors import UserError
from funnel_tf.text.corpus import ReadStats, check_text_inputs, expand_inputs, iter_text_batches
from funnel_tf.text.wordpiece import BertNormalizer

SPECIAL_LAYOUTS = ("bert", "compact")


class VocabError(UserError, ValueError):
    """Vocab-learning settings or a corpus that cannot give a vocab; the message says why."""


def reserved_tokens(layout: str = "bert") -> List[str]:
    """Tokens placed first in the vocab, in id order."""
    if layout == "bert":
        return ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    if layout == "compact":
        return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    raise VocabError(f"special layout must be one of {SPECIAL_LAYOUTS}, got {layout!r}")


def count_words(inputs: Sequence[str], lower_case: bool = True, doc_mode: str = "blank_line",
                skip_undecodable_lines: bool = False, fallback_encoding: Optional[str] = None,
                batch_lines: int = 4096, max_lines: Optional[int] = None,
                stats: Optional[ReadStats] = None) -> collections.Counter:
    """Counts BERT-normalised words over the corpus (streamed in batches of lines)."""
    normalizer = BertNormalizer(lower_case)
    split = tf.function(normalizer.split_words, input_signature=[tf.TensorSpec([None], tf.string)])
    counts: collections.Counter = collections.Counter()
    n_lines = 0
    files = expand_inputs(inputs)
    for batch in iter_text_batches(files, batch_lines=batch_lines, doc_mode=doc_mode, stats=stats,
                                   skip_undecodable_lines=skip_undecodable_lines,
                                   fallback_encoding=fallback_encoding):
        if max_lines is not None:
            batch = batch[:max(0, max_lines - n_lines)]
        if not batch:
            break
        counts.update(split(tf.constant(batch)).flat_values.numpy().tolist())
        n_lines += len(batch)
    return collections.Counter({w.decode("utf-8"): c for w, c in counts.items()})


def _check_room(vocab_size: int, layout: str) -> List[str]:
    """The layout's reserved tokens; VocabError if `vocab_size` leaves no room after them."""
    reserved = reserved_tokens(layout)
    if vocab_size <= len(reserved):
        raise VocabError(f"vocab_size={vocab_size} leaves no room after {len(reserved)} reserved "
                         f"tokens of the {layout!r} layout; use a larger --vocab_size")
    return reserved


def learn_vocab(word_counts, vocab_size: int, layout: str = "bert", max_unique_chars: int = 1000,
                max_token_length: int = 50, num_iterations: int = 4,
                lower_thresh: int = 2) -> List[str]:
    """Word counts -> vocab list (reserved tokens first, then tf-text's learned pieces).

    The size lands within 5% below ``vocab_size`` when the learner's threshold search can reach
    it; on very small corpora it can end above the target.
    """
    reserved = _check_room(vocab_size, layout)
    vocab = learner.learn(list(word_counts.items()), vocab_size, reserved, lower_thresh=lower_thresh,
                          num_iterations=num_iterations, max_token_length=max_token_length,
                          max_unique_chars=max_unique_chars, include_joiner_token=True, joiner="##")
    # The learner keeps reserved tokens in front, in order; make sure of it (ids depend on it).
    if vocab[:len(reserved)] != reserved:
        raise AssertionError("vocab learner reordered the reserved tokens")
    return vocab


def build_vocab(inputs: Sequence[str], output_path: str, vocab_size: int = 8000, layout: str = "bert",
                lower_case: bool = True, doc_mode: str = "blank_line", skip_undecodable_lines: bool = False,
                fallback_encoding: Optional[str] = None, max_lines: Optional[int] = None,
                lower_thresh: int = 2, progress: Optional[Callable[[str], None]] = None,
                overwrite: bool = False) -> dict:
    """Corpus globs -> ``vocab.txt`` at ``output_path``; returns a small report dict.

    An existing ``output_path`` is refused unless ``overwrite`` (records and models made with the
    old vocab would silently stop matching it); the file is written whole or not at all."""
    progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    _check_room(vocab_size, layout)  # settings first: fail before reading a corpus
    if max_lines is not None and max_lines < 1:
        raise VocabError(f"max_lines must be >= 1, got {max_lines}")
    if tf.io.gfile.isdir(output_path):
        raise VocabError(f"--output {output_path} is a directory; pass the path of a vocab.txt")
    if tf.io.gfile.exists(output_path) and not overwrite:
        raise VocabError(f"--output {output_path} already exists; pass --overwrite to replace it "
                         f"(records and models made with it will no longer match)")
    check_text_inputs(expand_inputs(inputs), fallback_encoding)
    t0 = time.time()
    stats = ReadStats()
    counts = count_words(inputs, lower_case=lower_case, doc_mode=doc_mode, stats=stats,
                         skip_undecodable_lines=skip_undecodable_lines,
                         fallback_encoding=fallback_encoding, max_lines=max_lines)
    if not counts:
        raise VocabError(f"no words found in {list(inputs)}")
    progress(f"[build-vocab] {sum(counts.values())} words ({len(counts)} distinct) from {stats.lines} lines "
             f"in {stats.files} files; learning {vocab_size} pieces")
    vocab = learn_vocab(counts, vocab_size, layout, lower_thresh=lower_thresh)
    out_dir = os.path.dirname(output_path)
    if out_dir:
        tf.io.gfile.makedirs(out_dir)
    partial = f"{output_path}.partial"
    with tf.io.gfile.GFile(partial, "w") as f:
        f.write("".join(t + "\n" for t in vocab))
    tf.io.gfile.rename(partial, output_path, overwrite=True)
    report = {"vocab_size": len(vocab), "words": sum(counts.values()), "distinct_words": len(counts),
              "lines": stats.lines, "files": stats.files,
              "skipped_undecodable_lines": stats.skipped_undecodable_lines,
              "fallback_decoded_lines": stats.fallback_decoded_lines, "seconds": round(time.time() - t0, 2)}
    progress(f"[build-vocab] wrote {len(vocab)} tokens to {output_path} in {report['seconds']} s")
    if len(vocab) > vocab_size:
        # The learner binary-searches a frequency threshold; on small corpora the search space runs
        # out above the target. Cutting the list could drop alphabet pieces, so we keep it whole.
        progress(f"[build-vocab] note: the learner returned {len(vocab)} tokens, above the target {vocab_size} "
                 "(threshold search ran out on this small corpus)")
    return report


__all__ = ["build_vocab", "learn_vocab", "count_words", "reserved_tokens", "SPECIAL_LAYOUTS",
           "VocabError"]
