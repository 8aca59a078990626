"""Input-pipeline throughput: our tf.data tokenizer and pretraining pipeline vs HuggingFace's fast tokenizer.

Run from the repo root (CPU; not a test)::

    python bench/bench_input_pipeline.py                      # shared corpus, BERT uncased vocab
    python bench/bench_input_pipeline.py --step_time_s 0.35 --train_batch_size 256 --train_seq_len 512

Prints, on the same text and the same vocab file:
  1. tokens/s of ``WordpieceTokenizer.tokenize`` inside a ``tf.data`` pipeline (batched lines),
  2. tokens/s of HF ``BertTokenizerFast(vocab_file=...)`` (Rust, no download) on the same batches,
     and the ratio ours / HF (ids are checked equal on the way),
  3. tokens/s of the full pretraining reader (TFRecords -> parse -> online masking -> batches),
     and of the masker alone with our reproducible item selector vs tf-text's RandomItemSelector
     (its shuffle is not reproducible for a seed; ratio ours / tf-text, same batches, same run),
  4. with ``--step_time_s``: tokens/s a training step consumes (batch * seq_len / step time) and how
     many times over the input pipeline covers it.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from funnel_tf.text.masking import MlmMasker  # noqa: E402
from funnel_tf.text.pretraining import create_pretraining_data, make_pretraining_dataset  # noqa: E402
from funnel_tf.text.wordpiece import WordpieceTokenizer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("FUNNEL_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))


def corpus_lines(corpus_dir: str) -> list[str]:
    lines = []
    for path in sorted(glob.glob(os.path.join(corpus_dir, "*", "*"))):
        if os.path.basename(path).startswith("README"):
            continue
        raw = open(path, "rb").read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        lines += [line for line in text.splitlines() if line.strip()]
    return lines


def best_of(fn, repeats: int):
    """(best seconds, result of the last run)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_ours(tok: WordpieceTokenizer, lines: list[str], batch: int, repeats: int):
    ds = (tf.data.Dataset.from_tensor_slices(lines).batch(batch)
          .map(tok.tokenize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))

    def run():
        n = 0
        for ids in ds:
            n += int(ids.flat_values.shape[0])
        return n

    run()  # trace + warm up
    return best_of(run, repeats)


def bench_hf(vocab: str, lines: list[str], batch: int, repeats: int):
    try:
        from transformers import BertTokenizerFast
    except Exception as e:  # pragma: no cover - optional peer
        print(f"  HF BertTokenizerFast unavailable ({type(e).__name__}: {e}); skipping the side-by-side")
        return None, None, None
    import inspect
    if "vocab_file" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers 4.x
        hf = BertTokenizerFast(vocab_file=vocab, do_lower_case=True)
    else:  # transformers 5.x takes the vocab itself (a vocab_file kwarg is silently ignored)
        with open(vocab, encoding="utf-8") as f:
            hf = BertTokenizerFast(vocab={t.rstrip("\n"): i for i, t in enumerate(f)}, do_lower_case=True)
    hf.backend_tokenizer.model.max_input_chars_per_word = 200  # BERT's (and our) word limit
    assert hf.vocab_size == sum(1 for _ in open(vocab, encoding="utf-8")), "HF tokenizer did not load the vocab"

    def run():
        n, out = 0, []
        for i in range(0, len(lines), batch):
            enc = hf(lines[i:i + batch], add_special_tokens=False)["input_ids"]
            n += sum(map(len, enc))
            out.append(enc)
        return n, out

    run()
    secs, (n, out) = best_of(run, repeats)
    return secs, n, [x for chunk in out for x in chunk]


def bench_pipeline(tok, corpus_dir, seq_len, batch, strategy, n_batches, workdir):
    rec_dir = os.path.join(workdir, f"records_{seq_len}")
    if not os.path.isdir(rec_dir):
        t = time.perf_counter()
        m = create_pretraining_data([os.path.join(corpus_dir, "*", "*.txt"), os.path.join(corpus_dir, "*", "*.raw")],
                                    rec_dir, tok.vocab_path, seq_len=seq_len, num_shards=8, seed=1,
                                    fallback_encoding="latin-1", progress=None)
        secs = time.perf_counter() - t
        print(f"  create-pretraining-data: {m['tokens']:,} tokens -> {m['num_examples']:,} examples of {seq_len} "
              f"in {secs:.1f} s = {m['tokens'] / secs:,.0f} tokens/s (single process, tokenization included)")
    masker = MlmMasker.from_tokenizer(tok, seq_len, strategy=strategy)
    ds = make_pretraining_dataset(os.path.join(rec_dir, "*.tfrecord"), seq_len, batch, masker=masker, seed=1)
    it = iter(ds)
    for _ in range(5):
        next(it)
    t = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    secs = time.perf_counter() - t
    return n_batches * batch * seq_len / secs


def bench_selector(tok, seq_len, batch, strategy, n_batches, workdir, rounds: int = 3):
    """Masker throughput (tokens/s) with `ReproducibleItemSelector` and with tf-text's own
    `RandomItemSelector`, on the same record batches, alternating; median of `rounds` each."""
    import statistics

    import tensorflow_text as tf_text

    class TfTextSelector(MlmMasker):
        def _selector(self, max_selections):
            return tf_text.RandomItemSelector(max_selections, 1.0, unselectable_ids=[self.pad_id])

    raw = make_pretraining_dataset(os.path.join(workdir, f"records_{seq_len}", "*.tfrecord"), seq_len,
                                   batch, seed=1).take(n_batches).cache()
    for _ in raw:  # read once: only masking is timed
        pass
    timings = {"ours": [], "tf-text": []}
    for _ in range(rounds):
        for name, cls in (("ours", MlmMasker), ("tf-text", TfTextSelector)):
            masked = raw.map(cls.from_tokenizer(tok, seq_len, strategy=strategy))
            t = time.perf_counter()
            for _ in masked:
                pass
            timings[name].append(n_batches * batch * seq_len / (time.perf_counter() - t))
    return {k: statistics.median(v) for k, v in timings.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus_dir", default=os.path.join(SHARED, "corpus"))
    p.add_argument("--vocab", default=os.path.join(SHARED, "vocab", "bert-base-uncased-vocab.txt"))
    p.add_argument("--batch_lines", type=int, default=1024, help="Lines per tokenizer call (both sides).")
    p.add_argument("--repeats", type=int, default=3, help="Best-of repeats for the tokenizer timings.")
    p.add_argument("--seq_len", type=int, default=512, help="Pretraining pipeline sequence length.")
    p.add_argument("--pipeline_batch", type=int, default=32, help="Pretraining pipeline batch size.")
    p.add_argument("--pipeline_batches", type=int, default=50, help="Batches timed per masking strategy.")
    p.add_argument("--step_time_s", type=float, default=None, help="Seconds per training step to compare with.")
    p.add_argument("--train_batch_size", type=int, default=256, help="Global batch of that training step.")
    p.add_argument("--train_seq_len", type=int, default=512, help="Sequence length of that training step.")
    args = p.parse_args(argv)

    lines = corpus_lines(args.corpus_dir)
    tok = WordpieceTokenizer(args.vocab)
    print(f"corpus: {len(lines):,} lines, {sum(map(len, lines)):,} chars from {args.corpus_dir}; "
          f"CPU threads visible: {os.cpu_count()}")

    print("\n1) tokenization, same lines, same vocab file")
    secs, n = bench_ours(tok, lines, args.batch_lines, args.repeats)
    ours_tps = n / secs
    print(f"  ours  (tf.data map, tf-text FastWordpiece + in-graph BERT normaliser): {n:,} tokens in {secs:.2f} s "
          f"= {ours_tps:,.0f} tokens/s")
    hf_secs, hf_n, hf_ids = bench_hf(args.vocab, lines, args.batch_lines, args.repeats)
    if hf_secs:
        hf_tps = hf_n / hf_secs
        print(f"  HF    (BertTokenizerFast, Rust, batch calls): {hf_n:,} tokens in {hf_secs:.2f} s "
              f"= {hf_tps:,.0f} tokens/s")
        print(f"  ratio ours / HF fast = {ours_tps / hf_tps:.2f}x")
        ours_ids = tok.tokenize(tf.constant(lines[:20000])).to_list()
        diff = sum(a != b for a, b in zip(ours_ids, hf_ids[:20000]))
        print(f"  ids equal to HF fast on the first 20,000 lines: {20000 - diff:,}/20,000")

    print(f"\n2) pretraining reader: TFRecords -> parse -> online masking -> batches of "
          f"{args.pipeline_batch} x {args.seq_len}")
    pipe = {}
    with tempfile.TemporaryDirectory() as work:
        for strategy in ("single_token", "word_span"):
            pipe[strategy] = bench_pipeline(tok, args.corpus_dir, args.seq_len, args.pipeline_batch, strategy,
                                            args.pipeline_batches, work)
            print(f"  {strategy:12s}: {pipe[strategy]:,.0f} tokens/s")
        print("  masker alone (same batches): reproducible selector vs tf-text's RandomItemSelector")
        for strategy in ("single_token", "word_span"):
            sel = bench_selector(tok, args.seq_len, args.pipeline_batch, strategy,
                                 args.pipeline_batches, work)
            print(f"  {strategy:12s}: ours {sel['ours']:,.0f} tokens/s, tf-text {sel['tf-text']:,.0f} "
                  f"tokens/s, ratio {sel['ours'] / sel['tf-text']:.2f}x")

    if args.step_time_s:
        need = args.train_batch_size * args.train_seq_len / args.step_time_s
        print(f"\n3) a training step of {args.train_batch_size} x {args.train_seq_len} every {args.step_time_s} s "
              f"consumes {need:,.0f} tokens/s")
        rows = [("tokenizer (raw text on the fly)", ours_tps)] + [(f"reader+{k}", v) for k, v in pipe.items()]
        for name, tps in rows:
            print(f"  {name:32s}: {tps / need:6.2f}x of what the step needs")


if __name__ == "__main__":
    main()
