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
     many times over the input pipeline covers it,
  5. resume: seconds from building the pretraining input at step 100 and at step 100k (same run
     shape) to its first batch, interleaved rounds, and their ratio (``start_batch`` jumps whole
     epochs and skips serialized records; the replay it replaced parsed and masked every batch),
  6. masking throughput of the keyed masker mapped in parallel (AUTOTUNE, deterministic) vs one
     batch at a time (``num_parallel_calls=None``, what deterministic input did before), same
     parsed batches, interleaved rounds, and the ratio.

``--sections resume,masking`` runs only 5 and 6 (no tokenizer or HF timings).
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

from funnel_tf.text.masking import MlmMasker, batch_key  # noqa: E402
from funnel_tf.text.pretraining import create_pretraining_data  # noqa: E402
from funnel_tf.text.pretraining_reader import make_pretraining_dataset  # noqa: E402
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
        def _selector(self, max_selections, seed=None):
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


def make_records(tok, corpus_dir, seq_len, workdir):
    """The corpus as pretraining records under `workdir` (made once); returns their glob."""
    rec_dir = os.path.join(workdir, f"records_{seq_len}")
    if not os.path.isdir(rec_dir):
        create_pretraining_data([os.path.join(corpus_dir, "*", "*.txt"), os.path.join(corpus_dir, "*", "*.raw")],
                                rec_dir, tok.vocab_path, seq_len=seq_len, num_shards=8, seed=1,
                                fallback_encoding="latin-1", progress=None)
    return os.path.join(rec_dir, "*.tfrecord")


def bench_resume(tok, pattern, seq_len, batch, steps=(100, 100_000), rounds: int = 5):
    """Seconds from building the masked input at each of `steps` to its first batch (what a
    replayed resume waits for), interleaved over `rounds`; median per step."""
    import statistics

    masker = MlmMasker.from_tokenizer(tok, seq_len)
    timings = {s: [] for s in steps}
    for _ in range(rounds):
        for step in steps:
            t = time.perf_counter()
            ds = make_pretraining_dataset(pattern, seq_len, batch, masker=masker, seed=1, start_batch=step)
            next(iter(ds))
            timings[step].append(time.perf_counter() - t)
    return {s: statistics.median(v) for s, v in timings.items()}


def bench_parallel_masking(tok, pattern, seq_len, batch, n_batches, strategy, rounds: int = 5):
    """Masker throughput (batches/s) on the same parsed batches: mapped with AUTOTUNE
    (deterministic) vs one at a time; interleaved rounds, median of each. Also the cores each
    used (process CPU seconds per wall second): on a loaded machine the speed-up is capped by
    the CPU left over, the cores used show whether the map ran in parallel."""
    import statistics

    masker = MlmMasker.from_tokenizer(tok, seq_len, strategy=strategy)
    raw = make_pretraining_dataset(pattern, seq_len, batch, seed=1).take(n_batches).cache()
    for _ in raw:  # read and parse once: only masking is timed
        pass
    timings = {"parallel": [], "serial": []}
    cores = {"parallel": [], "serial": []}
    for _ in range(rounds):
        for name, calls in (("parallel", tf.data.AUTOTUNE), ("serial", None)):
            ds = raw.enumerate().map(lambda i, f: masker(f, seed=batch_key(1, i)), num_parallel_calls=calls,
                                     deterministic=True)
            it = iter(ds)
            next(it)  # iterator start-up (function instantiation, graph rewrites) is not masking
            t, cpu = time.perf_counter(), time.process_time()
            for _ in it:
                pass
            wall = time.perf_counter() - t
            timings[name].append((n_batches - 1) / wall)
            cores[name].append((time.process_time() - cpu) / wall)
    out = {k: statistics.median(v) for k, v in timings.items()}
    out.update({f"{k}_cores": statistics.median(v) for k, v in cores.items()})
    return out


def resume_and_masking(args, tok):
    with tempfile.TemporaryDirectory() as work:
        pattern = make_records(tok, args.corpus_dir, args.seq_len, work)
        if "masking" in args.sections and "resume" not in args.sections:
            return parallel_masking(args, tok, pattern)
        print(f"\n5) resume: building the masked input at a step -> its first batch "
              f"({args.resume_batch} x {args.seq_len}, median of {args.rounds} interleaved rounds)")
        res = bench_resume(tok, pattern, args.seq_len, args.resume_batch, rounds=args.rounds)
        for step, secs in res.items():
            print(f"  step {step:>7,}: {secs:.2f} s")
        steps = sorted(res)
        print(f"  ratio step {steps[-1]:,} / step {steps[0]:,} = {res[steps[-1]] / res[steps[0]]:.2f}x; "
              f"load average now {os.getloadavg()[0]:.1f}")
        if "masking" in args.sections or args.sections == "all":
            parallel_masking(args, tok, pattern)


def parallel_masking(args, tok, pattern):
    print(f"\n6) masking, keyed masker on the same parsed batches, parallel (AUTOTUNE) vs serial "
          f"(median of {args.rounds} interleaved rounds, {args.pipeline_batches} batches each)")
    for batch in (8, args.pipeline_batch):
        for strategy in ("single_token", "word_span"):
            r = bench_parallel_masking(tok, pattern, args.seq_len, batch, args.pipeline_batches, strategy,
                                       rounds=args.rounds)
            print(f"  {batch:3d} x {args.seq_len} {strategy:12s}: parallel {r['parallel']:7.1f} batches/s, "
                  f"serial {r['serial']:7.1f} batches/s ({1000 / r['serial']:.2f} ms a batch), "
                  f"ratio {r['parallel'] / r['serial']:.2f}x; cores used {r['parallel_cores']:.2f} vs "
                  f"{r['serial_cores']:.2f}")
    print(f"  load average now {os.getloadavg()[0]:.1f}")


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
    p.add_argument("--resume_batch", type=int, default=256, help="Batch of the run resumed in section 5.")
    p.add_argument("--rounds", type=int, default=5, help="Interleaved rounds of sections 5 and 6.")
    p.add_argument("--sections", default="all", help="'all', or a comma list of: resume (5), "
                   "masking (6); these skip sections 1-4.")
    args = p.parse_args(argv)

    tok = WordpieceTokenizer(args.vocab)
    print(f"CPU threads visible: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
    if args.sections != "all":
        resume_and_masking(args, tok)
        return
    lines = corpus_lines(args.corpus_dir)
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
    resume_and_masking(args, tok)


if __name__ == "__main__":
    main()
