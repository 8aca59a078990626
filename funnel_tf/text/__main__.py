"""Command line for text data: ``python -m funnel_tf.text {build-vocab,create-pretraining-data} ...``.

Examples::

    python -m funnel_tf.text build-vocab --input 'corpus/*.txt' --output vocab.txt --vocab_size 8000
    python -m funnel_tf.text create-pretraining-data --input 'corpus/*.txt' --vocab vocab.txt \\
        --output_dir records/ --seq_len 512 --num_shards 64 --seed 1
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from funnel_tf import json_text
from funnel_tf.cli import ArgumentParser, main_with_user_errors

_READ_HELP = {
    "doc_mode": "How documents are delimited: 'blank_line' (a blank line or the end of a file ends a "
                "document) or 'file' (each file is one document). Every non-blank line is one sentence.",
    "skip_undecodable_lines": "Skip (and count in the report) lines that are not valid UTF-8, instead of "
                              "stopping with an error naming the file and line.",
    "fallback_encoding": "Decode lines that are not valid UTF-8 with this encoding (e.g. latin-1) and count "
                         "them, instead of stopping with an error.",
}


def _add_reading_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", action="append", required=True, metavar="GLOB",
                   help="Input text files (glob; repeat the flag for several). UTF-8 plain text.")
    p.add_argument("--doc_mode", choices=["blank_line", "file"], default="blank_line", help=_READ_HELP["doc_mode"])
    p.add_argument("--skip_undecodable_lines", action="store_true", help=_READ_HELP["skip_undecodable_lines"])
    p.add_argument("--fallback_encoding", default=None, help=_READ_HELP["fallback_encoding"])
    p.add_argument("--cased", action="store_true",
                   help="Keep case and accents (default: BERT uncased: lowercase + strip accents).")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m funnel_tf.text",
        description="Text data tools for funnel-tf: learn a WordPiece vocab, write pretraining TFRecords.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("build-vocab", help="Learn a WordPiece vocab.txt from plain text.",
                       description="Learn a WordPiece vocab.txt from plain text with tensorflow-text's vocab "
                                   "learner, splitting words exactly as funnel-tf's BERT tokenizer does.")
    _add_reading_args(v)
    v.add_argument("--output", required=True, help="Path of the vocab.txt to write (one token per line); "
                                                   "must not exist unless --overwrite.")
    v.add_argument("--overwrite", action="store_true", help="Replace an existing --output file.")
    v.add_argument("--vocab_size", type=int, default=8000,
                   help="Target vocab size including reserved tokens (the learner lands up to 5%% below it; on a "
                        "tiny corpus its threshold search can end above it).")
    v.add_argument("--special_layout", choices=["bert", "compact"], default="bert",
                   help="'bert': [PAD]=0, [unused0-98], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103 (BERT ids); "
                        "'compact': [PAD] [UNK] [CLS] [SEP] [MASK] = 0..4.")
    v.add_argument("--max_lines", type=int, default=None, help="Only read this many non-blank lines.")
    v.add_argument("--min_count", type=int, default=2,
                   help="Lower bound of the learner's token-frequency threshold search.")

    c = sub.add_parser("create-pretraining-data",
                       help="Write sharded [CLS] A [SEP] B [SEP] TFRecords for pretraining.",
                       description="Turn plain-text corpora into sharded fixed-length TFRecords "
                                   "([CLS] A [SEP] B [SEP], 50% random B, as the original Funnel-Transformer "
                                   "pipeline), streaming in constant memory, plus manifest.json with counts, "
                                   "the vocab's sha256 and seq_len. Deterministic for a given --seed.")
    _add_reading_args(c)
    c.add_argument("--vocab", required=True, help="WordPiece vocab.txt (BERT uncased or from build-vocab).")
    c.add_argument("--output_dir", required=True,
                   help="Directory for the shards and manifest.json; must be empty or new (old shards "
                        "left there would be read with the new ones).")
    c.add_argument("--overwrite", action="store_true",
                   help="Replace the shards and manifest.json an earlier run of this tool wrote in "
                        "--output_dir (other files there are left alone, and the reader refuses "
                        "shards the manifest does not list).")
    c.add_argument("--seq_len", type=int, default=512, help="Tokens per example, specials included.")
    c.add_argument("--num_shards", type=int, default=8, help="Number of output TFRecord files.")
    c.add_argument("--seed", type=int, default=12345, help="Seed for file order, document shuffle, pairs.")
    c.add_argument("--prefix", default="pretrain", help="Shard file name prefix.")
    c.add_argument("--random_b_pool", type=int, default=20000,
                   help="Sentences kept in the ring buffer that random B spans are drawn from.")
    c.add_argument("--shuffle_buffer_tokens", type=int, default=2_000_000,
                   help="Documents are shuffled through a buffer of about this many tokens.")
    c.add_argument("--max_examples", type=int, default=None, help="Stop after this many examples.")
    c.add_argument("--progress_every_s", type=float, default=10.0, help="Seconds between progress lines.")
    return parser


@main_with_user_errors("python -m funnel_tf.text")
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command == "build-vocab":
        from funnel_tf.text.vocab import build_vocab
        report = build_vocab(args.input, args.output, vocab_size=args.vocab_size, layout=args.special_layout,
                             lower_case=not args.cased, doc_mode=args.doc_mode,
                             skip_undecodable_lines=args.skip_undecodable_lines,
                             fallback_encoding=args.fallback_encoding, max_lines=args.max_lines,
                             lower_thresh=args.min_count, overwrite=args.overwrite)
    else:
        from funnel_tf.text.pretraining import create_pretraining_data
        report = create_pretraining_data(
            args.input, args.output_dir, args.vocab, seq_len=args.seq_len, num_shards=args.num_shards,
            seed=args.seed, doc_mode=args.doc_mode, lower_case=not args.cased,
            skip_undecodable_lines=args.skip_undecodable_lines, fallback_encoding=args.fallback_encoding,
            random_b_pool=args.random_b_pool, shuffle_buffer_tokens=args.shuffle_buffer_tokens,
            max_examples=args.max_examples, prefix=args.prefix, progress_every_s=args.progress_every_s,
            overwrite=args.overwrite)
        report = {k: v for k, v in report.items() if k not in ("inputs", "files")}
    print(json_text.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    from funnel_tf.logs import quiet_tensorflow
    quiet_tensorflow()  # before TF loads; keeps a TF_CPP_MIN_LOG_LEVEL the user set
    sys.exit(main())
