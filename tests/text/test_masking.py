"""Online MLM masking: feature contract, invariants, and statistics on real corpus text."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.text.masking import (MlmMasker, ReproducibleItemSelector, batch_key,
                                    num_predictions_for, span_length_probs, word_start_table)
from funnel_tf.text.pretraining import create_pretraining_data
from funnel_tf.text.pretraining_reader import make_pretraining_dataset
from funnel_tf.text.wordpiece import shared_tokenizer

SEQ = 128
CONTRACT = {"input_ids": (tf.int32, SEQ), "attention_mask": (tf.int32, SEQ), "token_type_ids": (tf.int32, SEQ),
            "masked_positions": (tf.int32, 21), "masked_ids": (tf.int32, 21), "masked_weights": (tf.float32, 21)}


@pytest.fixture(scope="module")
def tok(bert_vocab):
    """The process's BERT tokenizer, the one create_pretraining_data reads the corpus with."""
    return shared_tokenizer(str(bert_vocab))


@pytest.fixture(scope="module")
def corpus_batches(shared_data, bert_vocab, tmp_path_factory):
    """~1500 real [CLS] A [SEP] B [SEP] examples (State of the Union addresses), as 24 batches of 64."""
    out = tmp_path_factory.mktemp("su_records")
    create_pretraining_data([str(shared_data / "corpus" / "state_union" / "*.txt")], str(out), str(bert_vocab),
                            seq_len=SEQ, num_shards=2, seed=5, fallback_encoding="latin-1",
                            max_examples=1536, progress=None)
    ds = make_pretraining_dataset(str(out / "*.tfrecord"), SEQ, 64, shuffle=False, repeat=False)
    return [{k: v for k, v in b.items()} for b in ds]


def _mask_all(masker, batches):
    return [(b, masker(b)) for b in batches]


def _check_invariants(tok, original, out, num_predict):
    ids = original["input_ids"].numpy()
    masked = out["input_ids"].numpy()
    pos = out["masked_positions"].numpy()
    tgt = out["masked_ids"].numpy()
    w = out["masked_weights"].numpy()
    np.testing.assert_array_equal(out["attention_mask"].numpy(), original["attention_mask"].numpy())
    np.testing.assert_array_equal(out["token_type_ids"].numpy(), original["token_type_ids"].numpy())
    for r in range(ids.shape[0]):
        n = int(w[r].sum())
        assert n == num_predict  # every real example has far more candidates than P
        assert np.all(w[r, :n] == 1) and np.all(w[r, n:] == 0)
        p = pos[r, :n]
        assert np.all(np.diff(p) > 0)  # ascending, unique
        assert np.all(pos[r, n:] == 0) and np.all(tgt[r, n:] == 0)
        np.testing.assert_array_equal(tgt[r, :n], ids[r, p])  # originals at the positions
        assert not np.isin(ids[r, p], [tok.cls_id, tok.sep_id, tok.pad_id]).any()
        untouched = np.ones(ids.shape[1], bool)
        untouched[p] = False
        np.testing.assert_array_equal(masked[r, untouched], ids[r, untouched])


@pytest.mark.parametrize("strategy", ["single_token", "word_span"])
def test_contract_and_invariants_on_real_text(tok, corpus_batches, strategy):
    masker = MlmMasker.from_tokenizer(tok, SEQ, strategy=strategy)
    assert masker.num_predict == 21
    ds = tf.data.Dataset.from_tensor_slices({k: tf.concat([b[k] for b in corpus_batches[:2]], 0)
                                             for k in corpus_batches[0]}).batch(64, drop_remainder=True)
    spec = ds.map(masker).element_spec
    for k, (dtype, width) in CONTRACT.items():
        assert spec[k].dtype == dtype and spec[k].shape.as_list() == [64, width], k
    for b, out in _mask_all(masker, corpus_batches[:4]):
        _check_invariants(tok, b, out, masker.num_predict)


@pytest.mark.parametrize("strategy", ["single_token", "word_span"])
def test_80_10_10_and_rate_on_real_text(tok, corpus_batches, strategy):
    tf.random.set_seed(1)
    masker = MlmMasker.from_tokenizer(tok, SEQ, strategy=strategy)
    counts = collections.Counter()
    real_tokens = 0
    for b, out in _mask_all(masker, corpus_batches):
        ids = b["input_ids"].numpy()
        pos = out["masked_positions"].numpy()
        w = out["masked_weights"].numpy().astype(bool)
        rows = np.repeat(np.arange(ids.shape[0])[:, None], pos.shape[1], 1)
        orig = ids[rows[w], pos[w]]
        new = out["input_ids"].numpy()[rows[w], pos[w]]
        counts["mask"] += int(np.sum(new == tok.mask_id))
        counts["keep"] += int(np.sum(new == orig))
        counts["random"] += int(np.sum((new != orig) & (new != tok.mask_id)))
        real_tokens += int(b["attention_mask"].numpy().sum())
    n = sum(counts.values())
    assert n == len(corpus_batches) * 64 * 21  # 32k targets
    # 80/10/10; a random draw can equal the original (1/30522), negligible at this tolerance.
    assert abs(counts["mask"] / n - 0.8) < 0.012, counts
    assert abs(counts["random"] / n - 0.1) < 0.01, counts
    assert abs(counts["keep"] / n - 0.1) < 0.01, counts
    assert abs(n / real_tokens - 21 / 128) < 0.002  # masking rate: exactly P per full sequence


def test_word_span_lengths_follow_inverse_length_prior(tok, corpus_batches):
    """Spans before the single-token fill: whole words, 1..5 long, P(len) ∝ 1/(len+1)."""
    tf.random.set_seed(2)
    masker = MlmMasker.from_tokenizer(tok, SEQ, strategy="word_span")
    starts = word_start_table(tok.vocab)
    hist = collections.Counter()
    ends_on_word_boundary = total_runs = 0
    for b in corpus_batches:
        ids = tf.cast(b["input_ids"], tf.int32)
        special = np.isin(ids.numpy(), [tok.cls_id, tok.sep_id, tok.pad_id])
        cand = tf.constant((b["attention_mask"].numpy() == 1) & ~special)
        is_t = masker._word_span_targets(ids, cand, b["attention_mask"]).numpy()
        idn = ids.numpy()
        for r in range(is_t.shape[0]):
            padded = np.concatenate([[False], is_t[r], [False]])
            edges = np.flatnonzero(np.diff(padded.astype(int)))
            for s, e in zip(edges[::2], edges[1::2]):
                total_runs += 1
                hist[int(starts[idn[r, s:e]].sum())] += 1
                ends_on_word_boundary += int(e >= SEQ or starts[idn[r, e]] or special[r, e])
    n = sum(hist.values())
    observed = np.array([hist[k] / n for k in range(1, 6)])
    expected = span_length_probs(1, 5)
    # The last accepted span of each row may be cut by the budget, so long spans are a bit rarer;
    # spans in adjacent regions can touch (runs of 6+ words), rarely.
    assert np.all(np.abs(observed[:4] - expected[:4]) < 0.04), (observed, expected)
    assert 0.06 < observed[4] < expected[4] + 0.01
    assert sum(v for k, v in hist.items() if k > 5) / n < 0.02
    assert ends_on_word_boundary / total_runs > 0.9  # spans are whole words


def test_truncation_for_pooling_never_predicts_dropped_tail(tok, corpus_batches):
    masker = MlmMasker.from_tokenizer(tok, SEQ, strategy="word_span", truncate_stride=4)
    out = masker(corpus_batches[0])
    ids = out["input_ids"].numpy()
    assert np.all(ids[:, SEQ - 4] == tok.sep_id) and np.all(ids[:, SEQ - 3:] == tok.pad_id)
    np.testing.assert_array_equal(out["attention_mask"].numpy()[:, SEQ - 4:], [[1, 0, 0, 0]] * 64)
    np.testing.assert_array_equal(out["token_type_ids"].numpy()[:, SEQ - 3:], np.zeros((64, 3)))
    assert out["masked_positions"].numpy().max() < SEQ - 4
    assert np.all(out["masked_weights"].numpy().sum(1) == 21)


@pytest.mark.parametrize("strategy", ["single_token", "word_span"])
def test_short_and_padded_rows(tok, strategy):
    """Fewer candidates than P: every candidate is a target, the rest of the slots are padding."""
    packed = [[tok.cls_id, 7592, 2088, tok.sep_id, 2129, tok.sep_id] + [0] * 10,
              [tok.cls_id] + [2023 + i for i in range(13)] + [tok.sep_id, 0]]
    ids = tf.constant(packed, tf.int32)
    feats = {"input_ids": ids, "token_type_ids": tf.zeros_like(ids),
             "attention_mask": tf.cast(ids != 0, tf.int32)}
    masker = MlmMasker.from_tokenizer(tok, 16, num_predict=5, strategy=strategy)
    out = masker(feats)
    np.testing.assert_array_equal(out["masked_weights"].numpy(), [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(out["masked_positions"].numpy()[0], [1, 2, 4, 0, 0])
    np.testing.assert_array_equal(out["masked_ids"].numpy()[0], [7592, 2088, 2129, 0, 0])
    # Unbatched input works too (map before batch).
    one = masker({k: v[1] for k, v in feats.items()})
    assert one["masked_positions"].shape == (5,) and one["input_ids"].shape == (16,)


def test_num_predictions_and_errors(tok):
    assert num_predictions_for(512) == 85 and num_predictions_for(128) == 21 and num_predictions_for(8) == 1
    with pytest.raises(ValueError, match="word_starts"):
        MlmMasker(30522, 103, 101, 102, 0, 128, strategy="word_span")
    with pytest.raises(ValueError, match="strategy"):
        MlmMasker(30522, 103, 101, 102, 0, 128, strategy="token_span")
    m = MlmMasker.from_tokenizer(tok, 128)
    with pytest.raises(ValueError, match="seq_len=128"):
        m({"input_ids": tf.zeros([2, 64], tf.int32)})


def _synthetic(strategy, rows=64, seq=64, vocab=1000):
    """Random [CLS] ... [SEP] rows of random lengths and a masker for them (no shared data)."""
    rng = np.random.RandomState(0)
    ids = rng.randint(10, vocab, size=(rows, seq)).astype(np.int32)
    lengths = rng.randint(8, seq + 1, size=rows)
    ids[:, 0] = 2
    for r, n in enumerate(lengths):
        ids[r, n - 1], ids[r, n:] = 3, 0
    features = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int32),
                "token_type_ids": np.zeros_like(ids)}
    masker = MlmMasker(vocab, mask_id=4, cls_id=2, sep_id=3, pad_id=0, seq_len=seq,
                       strategy=strategy, word_starts=rng.rand(vocab) < 0.7)
    return features, masker


@pytest.mark.parametrize("strategy", ["single_token", "word_span"])
def test_masks_are_reproducible_for_a_seed(strategy):
    """Masks are a pure function of (batch, key): masking batches in parallel (AUTOTUNE) in two
    separately built pipelines gives the same masks, batch for batch, keyed on the batch index, so
    a resumed run (which starts at a later index) and two runs with one --seed agree. (tf-text's
    default item shuffle runs rows in parallel on one random op, and a stateful op in a parallel
    map hands its numbers out in thread order: both made the masks differ between passes.)"""
    features, masker = _synthetic(strategy)

    def masks():
        ds = (tf.data.Dataset.from_tensors(features).repeat(12).enumerate()
              .map(lambda i, f: masker(f, seed=batch_key(7, i)), num_parallel_calls=tf.data.AUTOTUNE,
                   deterministic=True))
        return [np.concatenate([b["input_ids"].numpy(), b["masked_positions"].numpy()], axis=1)
                for b in ds]

    first, second = masks(), masks()
    assert not all(np.array_equal(first[0], b) for b in first[1:])  # batches differ: random
    for i, (a, b) in enumerate(zip(first, second)):
        np.testing.assert_array_equal(a, b, err_msg=f"batch {i}")
    # Eagerly, outside tf.data, the key alone decides: batch 5 masked on its own is batch 5.
    alone = masker(features, seed=batch_key(7, 5))
    np.testing.assert_array_equal(alone["input_ids"].numpy(), first[5][:, :64])


@pytest.mark.parametrize("strategy", ["single_token", "word_span"])
def test_keyed_masking_uses_no_stateful_random_op(strategy):
    """With a key, the masker's graph holds only stateless random ops (no RandomUniform,
    RandomShuffle, Multinomial...): nothing whose numbers depend on what ran before."""
    features, masker = _synthetic(strategy, rows=4)
    spec = {k: tf.TensorSpec([4, 64], tf.int32) for k in features}
    graph = tf.function(lambda f, k: masker(f, seed=k)).get_concrete_function(
        spec, tf.TensorSpec([2], tf.int64)).graph
    ops = {op.type for op in graph.get_operations()}
    for fn in graph._functions.values():  # noqa: SLF001 (nested functions, e.g. while bodies)
        ops |= {node.op for node in fn.cached_definition.node_def}
    stateful_random = {"RandomUniform", "RandomUniformInt", "RandomShuffle", "Multinomial",
                       "RandomStandardNormal", "TruncatedNormal", "RandomGamma", "RandomPoisson",
                       "RandomPoissonV2"}
    assert not ops & stateful_random, ops & stateful_random
    assert any(op.startswith("Stateless") for op in ops)


def test_reproducible_selector_chooses_what_tf_text_chooses():
    """Per row: exactly tf-text's count, min(ceil(n * rate), max_selections) of the n selectable
    items (max as a number or per row), never an unselectable one, each selectable item about
    equally often (uniform subset)."""
    import tensorflow_text as tf_text

    rng = np.random.RandomState(1)
    rows = [rng.randint(1, 50, size=n).tolist() for n in (0, 1, 5, 17, 40, 40, 63)]
    for r in rows[4:]:
        r[::3] = [0] * len(r[::3])  # id 0 unselectable
    ids = tf.ragged.constant(rows, dtype=tf.int32)
    for rate, cap in ((0.15, 6), (1.0, 10), (0.5, tf.constant([3, 3, 3, 3, 3, 20, 1], tf.float32))):
        ours = ReproducibleItemSelector(cap, rate, unselectable_ids=[0])
        theirs = tf_text.RandomItemSelector(cap, rate, unselectable_ids=[0])
        a = ours.get_selection_mask(ids, axis=1)
        b = theirs.get_selection_mask(ids, axis=1)
        assert a.row_lengths().numpy().tolist() == [len(r) for r in rows]
        np.testing.assert_array_equal(tf.reduce_sum(tf.cast(a, tf.int32), axis=1),
                                      tf.reduce_sum(tf.cast(b, tf.int32), axis=1))
        assert not tf.reduce_any(a.flat_values & tf.equal(ids.flat_values, 0))
    # Uniform: over 2000 rows of the same 40 items, 10 chosen per row, each item is picked in ~25%.
    rows = tf.RaggedTensor.from_tensor(tf.tile(tf.range(1, 41)[None], [2000, 1]))
    chosen = ReproducibleItemSelector(10, 1.0).get_selection_mask(rows, axis=1).to_tensor()
    np.testing.assert_array_equal(tf.reduce_sum(tf.cast(chosen, tf.int32), axis=1), 10)
    freq = tf.reduce_mean(tf.cast(chosen, tf.float32), axis=0).numpy()
    assert np.all(np.abs(freq - 0.25) < 0.05), freq
