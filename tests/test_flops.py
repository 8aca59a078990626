"""Analytical FLOPs: hand-computed counts for a tiny config, table sizes tied to position.py, and the
paper's relative-FLOPs figure (B4-4-4H768 about 0.58x of L12H768)."""

import pytest

from funnel_tf import flops as F
from funnel_tf.config import FunnelConfig, load_config

# d=4, N*H=2, F=6; seq 4 -> block lengths [4, 2]; layer 1 pools the query only (Lq=2, Lk=4).
TINY = FunnelConfig(vocab_size=10, block_sizes=[1, 1], num_decoder_layers=1, d_model=4, n_head=1, d_head=2,
                    d_inner=6)


def test_tiny_forward_by_hand():
    got = F.forward_flops(TINY, 4)
    # layer 0 (4x4): q 2*4*4*2=64, k+v 128, out 64 | layer 1 (2x4): q 32, k+v 128, out 32
    assert got["attention_proj"] == 256 + 192
    assert got["qk"] == 2 * 4 * 4 * 2 + 2 * 2 * 4 * 2 == got["av"]
    assert got["token_type"] == 2 * 4 * 2 * 2 + 2 * 2 * 2 * 2
    assert got["ffn"] == 4 * 4 * 4 * 6 + 4 * 2 * 4 * 6
    # shift tables: layer 0 R = 4 + 4 rows, layer 1 R = 2*2 + 4; score 2*Lq*R*NH, r_head 2*R*d*NH each
    assert got["relative_position"] == (2 * 4 * 8 * 2 + 2 * 2 * 8 * 2) + 2 * (2 * 8 * 4 * 2)
    assert got["pooling"] == 2 * 2 * 4  # mean of pairs: add + scale per pooled element
    assert got["embedding"] == 0 and got["decoder"] == 0
    assert got["total"] == 1728 == sum(got[t] for t in F.TERMS)


def test_batch_scales_everything_but_the_position_projection():
    one, three = F.forward_flops(TINY, 4, 1), F.forward_flops(TINY, 4, 3)
    proj = 2 * (2 * 8 * 4 * 2)
    assert three["relative_position"] == 3 * (one["relative_position"] - proj) + proj
    assert three["total"] == 4672
    assert F.flops_per_token(TINY, 4, 3) == pytest.approx(4672 / 12)


def test_train_is_three_forwards_minus_constant_input_gradients():
    assert F.train_flops(TINY, 4) == 3 * 1728 - 2 * (2 * 8 * 4 * 2)


def test_factorized_and_decoder_and_input_projection():
    fac = F.forward_flops(TINY.replace(attention_type="factorized"), 4)
    # q_r: 2*Lq*NH*d; scores: 2 products of 2*Lq*N*Lk*d
    assert fac["relative_position"] == (2 * 4 * 2 * 4 + 4 * 4 * 4 * 4) + (2 * 2 * 2 * 4 + 4 * 2 * 4 * 4)
    full = F.forward_flops(TINY, 4, with_decoder=True)
    layer0 = 256 + 64 + 64 + 32 + 384 + 128 + 128  # a full-length layer, as layer 0 above
    assert full["decoder"] == 4 * 4 + layer0  # upsample add + one decoder layer
    emb = F.forward_flops(TINY.replace(d_embed=3), 4)
    assert emb["embedding"] == 2 * 4 * 3 * 4


def test_table_rows_match_position_module():
    """The R used above is the length of the tables position.py actually builds."""
    from funnel_tf.modeling.position import block_positions, relative_distances
    cfg = load_config("small-base")
    for seq_len in (128, 131, 512):
        lengths = cfg.pooled_lengths(seq_len)
        pos = block_positions(seq_len, 3, cfg.separate_cls, cfg.truncate_seq)
        for b in range(3):
            assert len(relative_distances(pos[b], 2 ** b)) == 2 * lengths[b]
            if b:
                assert len(relative_distances(pos[b - 1], 2 ** (b - 1), pos[b], shift=2)) == \
                    2 * lengths[b] + lengths[b - 1]


def test_paper_relative_flops_b444_vs_l12():
    small = load_config("small-base")
    baseline = F.single_block_baseline(small)
    assert baseline.block_sizes == [12] and baseline.num_blocks == 1
    # The paper's figure puts B4-4-4H768 at 0.58x of L12H768 (pretraining length 512).
    assert F.relative_flops(small, baseline, 512) == pytest.approx(0.58, abs=0.01)
    assert F.relative_flops(small, baseline, 128) == pytest.approx(0.59, abs=0.01)
    # B6-6-6H768: the paper's figure says 0.88; our count includes the relative-position terms, which
    # shrink with pooling too, so it lands a little lower (0.859).
    b666 = small.replace(block_sizes=[6, 6, 6])
    assert F.relative_flops(b666, baseline, 512) == pytest.approx(0.87, abs=0.015)


def test_published_small_train_flops_magnitude():
    """B4-4-4H768 at 8x128: block lengths 128/64/32; the first layer of blocks 2 and 3 reads
    full-length keys and values (pool_q_only)."""
    small = load_config("small-base")
    fwd = F.forward_flops(small, 128, 8)
    dense = 2 * 8 * (4 * 768 * 768 + 2 * 768 * 3072)  # projections + FFN per token of a batch of 8
    kv = 2 * 8 * 2 * 768 * 768  # k and v projections per key token
    want = dense * 4 * (128 + 64 + 32) + kv * ((128 - 64) + (64 - 32))
    assert fwd["attention_proj"] + fwd["ffn"] == want
    assert fwd["total"] == pytest.approx(110.1e9, rel=1e-3)
    assert F.train_flops(small, 128, 8) == pytest.approx(3 * fwd["total"], rel=0.01)


def test_mfu_and_bad_input():
    assert F.model_flops_utilization(1e12, 2.0, 1e12) == 0.5
    with pytest.raises(ValueError):
        F.model_flops_utilization(1e12, 0.0, 1e12)
    with pytest.raises(Exception, match="too short"):
        F.forward_flops(TINY.replace(block_sizes=[1, 1, 1], block_repeats=None), 3)
