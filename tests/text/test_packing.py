"""pack_inputs: layout, token types, BERT's longest-first pair truncation, RACE's keep-tail-A."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.text.packing import pack_inputs, pair_lengths_longest_first

CLS, SEP, PAD = 101, 102, 0


def _ragged(rows):
    return tf.ragged.constant(rows, dtype=tf.int32)


def _bert_truncate_pair(a, b, budget):
    """BERT's reference pop loop (run_classifier._truncate_seq_pair)."""
    a, b = list(a), list(b)
    while len(a) + len(b) > budget:
        if len(a) > len(b):
            a.pop()
        else:
            b.pop()
    return a, b


def test_pair_layout_and_token_types():
    f = pack_inputs(_ragged([[1, 2], [5]]), _ragged([[3], [6, 7, 8]]), 8, CLS, SEP, PAD)
    np.testing.assert_array_equal(f["input_ids"].numpy(), [[CLS, 1, 2, SEP, 3, SEP, 0, 0],
                                                           [CLS, 5, SEP, 6, 7, 8, SEP, 0]])
    np.testing.assert_array_equal(f["token_type_ids"].numpy(), [[2, 0, 0, 0, 1, 1, 0, 0],
                                                                [2, 0, 0, 1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(f["attention_mask"].numpy(), [[1, 1, 1, 1, 1, 1, 0, 0],
                                                                [1, 1, 1, 1, 1, 1, 1, 0]])
    for v in f.values():
        assert v.dtype == tf.int32 and v.shape == (2, 8)


def test_single_segment_truncates_to_seq_len_minus_two():
    f = pack_inputs(_ragged([[1, 2, 3, 4, 5], []]), None, 5, CLS, SEP, pad_id=7)
    np.testing.assert_array_equal(f["input_ids"].numpy(), [[CLS, 1, 2, 3, SEP], [CLS, SEP, 7, 7, 7]])
    np.testing.assert_array_equal(f["token_type_ids"].numpy(), [[2, 0, 0, 0, 0], [2, 0, 0, 0, 0]])
    tail = pack_inputs(_ragged([[1, 2, 3, 4, 5]]), None, 5, CLS, SEP, truncation="keep_tail_a")
    np.testing.assert_array_equal(tail["input_ids"].numpy(), [[CLS, 3, 4, 5, SEP]])


def test_longest_first_matches_bert_pop_loop_exhaustively():
    lengths = list(itertools.product(range(0, 12), range(0, 12)))
    a = _ragged([list(range(1, la + 1)) for la, _ in lengths])
    b = _ragged([list(range(100, 100 + lb)) for _, lb in lengths])
    for budget in (1, 4, 7, 10):
        new_a, new_b = pair_lengths_longest_first(a.row_lengths(), b.row_lengths(), budget)
        want = [tuple(map(len, _bert_truncate_pair(range(la), range(lb), budget))) for la, lb in lengths]
        assert list(zip(new_a.numpy().tolist(), new_b.numpy().tolist())) == want
    f = pack_inputs(a, b, 10, CLS, SEP)
    for row, (la, lb) in zip(f["input_ids"].numpy(), lengths):
        ta, tb = _bert_truncate_pair(range(1, la + 1), range(100, 100 + lb), 7)
        want = [CLS, *ta, SEP, *tb, SEP]
        assert row.tolist() == want + [PAD] * (10 - len(want))


def test_keep_tail_a_keeps_last_tokens_of_a_and_head_of_b():
    a = _ragged([[1, 2, 3, 4, 5, 6]])
    b = _ragged([[10, 11, 12, 13, 14, 15]])
    f = pack_inputs(a, b, 9, CLS, SEP, truncation="keep_tail_a")
    # budget 6 -> 3 + 3: A keeps its last three, B its first three.
    np.testing.assert_array_equal(f["input_ids"].numpy(), [[CLS, 4, 5, 6, SEP, 10, 11, 12, SEP]])


def test_graph_mode_static_shapes_and_errors():
    ds = tf.data.Dataset.from_tensor_slices(tf.ragged.constant([[1, 2, 3], [4]], dtype=tf.int64))
    ds = ds.batch(2).map(lambda x: pack_inputs(x, x, 6, CLS, SEP))
    assert ds.element_spec["input_ids"].shape.as_list() == [None, 6]
    out = next(iter(ds))
    np.testing.assert_array_equal(out["input_ids"].numpy(), [[CLS, 1, 2, SEP, 1, SEP],
                                                             [CLS, 4, SEP, 4, SEP, PAD]])
    with pytest.raises(ValueError, match="truncation"):
        pack_inputs(_ragged([[1]]), None, 4, CLS, SEP, truncation="middle")
    with pytest.raises(ValueError, match="no room"):
        pack_inputs(_ragged([[1]]), _ragged([[1]]), 3, CLS, SEP)
