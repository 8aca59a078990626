"""Analytical FLOP counts of a Funnel-Transformer forward pass and train step, for any FunnelConfig.

Counts follow our implementation term by term (so measured time and counted FLOPs describe the same
work) and the usual MFU convention: a multiply-add is 2 FLOPs, only matrix products are counted, and
element-wise work (LayerNorm, softmax, GELU, masking, dropout) is left out. The two exceptions that
the issue asks to see are the pooling and upsampling element-wise ops, which are tiny and reported in
their own rows. Pure Python (no TensorFlow), so benchmarks and docs can import it anywhere.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from funnel_tf.config import FunnelConfig

# Rows of a breakdown, in report order. "decoder" holds every term of the decoder layers plus the
# upsampling add; the other rows are encoder (and embedding) only.
TERMS = ("embedding", "attention_proj", "relative_position", "token_type", "qk", "av", "ffn", "pooling",
         "decoder")


def _layer_shapes(config: FunnelConfig, seq_len: int) -> List[Tuple[int, int, bool]]:
    """(query_len, key_len, first_of_pooled_block) for every encoder layer application, in order."""
    lengths = config.pooled_lengths(seq_len)
    out = []
    for b, size in enumerate(config.block_sizes):
        for i in range(size):
            for r in range(config.block_repeats[b]):
                first = b > 0 and i == 0 and r == 0
                lk = lengths[b - 1] if first and config.pool_q_only else lengths[b]
                out.append((lengths[b], lk, first))
    return out


def layer_flops(config: FunnelConfig, lq: int, lk: int) -> Dict[str, int]:
    """Forward FLOPs of one FunnelLayer for ONE sequence, except the position-table projection.

    The relative-shift position term also projects a [R, D] table once per layer for the whole
    batch; `position_projection_flops` counts that separately because it does not scale with batch.
    """
    d, nh, f = config.d_model, config.n_head * config.d_head, config.d_inner
    terms = {
        # q from the (pooled) query, k and v from the full keys, then the output projection.
        "attention_proj": 2 * lq * d * nh + 2 * 2 * lk * d * nh + 2 * lq * nh * d,
        "qk": 2 * lq * lk * nh,
        "av": 2 * lq * lk * nh,
        # [Lq, N, H] x [2, N, H] -> [Lq, N, 2]; the per-pair select is element-wise.
        "token_type": 2 * lq * nh * 2,
        "ffn": 2 * 2 * lq * d * f,
    }
    if config.attention_type == "relative_shift":
        shift = 2 if lq != lk else 1
        r = shift * lq + lk  # rows of the position table read by the relative shift
        terms["relative_position"] = 2 * lq * r * nh  # (q + v) . r_head over all R distances
    else:
        # q_r = (q + v) W_R^T per head -> [Lq, N, D]; then two [Lq, N, D] x [Lk, D] products.
        terms["relative_position"] = 2 * lq * nh * d + 2 * 2 * lq * config.n_head * lk * d
    return terms


def position_projection_flops(config: FunnelConfig, lq: int, lk: int) -> int:
    """r_head = r W_R for one relative-shift layer: a [R, D] x [D, N*H] product, once per batch."""
    if config.attention_type != "relative_shift":
        return 0
    shift = 2 if lq != lk else 1
    return 2 * (shift * lq + lk) * config.d_model * config.n_head * config.d_head


def forward_flops(config: FunnelConfig, seq_len: int, batch_size: int = 1,
                  with_decoder: bool = False) -> Dict[str, int]:
    """Forward FLOPs of a batch, per row of TERMS plus "total".

    with_decoder=False is FunnelBaseModel (encoder only, the paper's FLOPs comparison);
    True adds the upsampling decoder of FunnelModel.
    """
    config.check_seq_len(seq_len)
    d = config.d_model
    out = {t: 0 for t in TERMS}
    if config.d_embed is not None and config.d_embed != d:
        out["embedding"] = batch_size * 2 * seq_len * config.d_embed * d  # input projection
    lengths = config.pooled_lengths(seq_len)
    for lq, lk, first in _layer_shapes(config, seq_len):
        for name, value in layer_flops(config, lq, lk).items():
            out[name] += batch_size * value
        out["relative_position"] += position_projection_flops(config, lq, lk)
        if first:
            # mean pooling: one add and one scale per pooled element (max: one compare)
            per = 2 if config.pooling_type == "mean" else 1
            out["pooling"] += batch_size * per * lq * d
    if with_decoder and config.num_decoder_layers:
        dec = batch_size * seq_len * d  # upsampled + first-block residual add
        n = config.num_decoder_layers * config.decoder_repeats
        per_layer = sum(layer_flops(config, seq_len, seq_len).values())
        dec += n * (batch_size * per_layer + position_projection_flops(config, seq_len, seq_len))
        out["decoder"] = dec
    out["total"] = sum(out[t] for t in TERMS)
    return out


def train_flops(config: FunnelConfig, seq_len: int, batch_size: int = 1, with_decoder: bool = False) -> int:
    """Forward + backward FLOPs of one step (the optimizer update is not counted).

    Backward costs twice the forward (input and weight gradients) for every product except the
    position-table projection, whose input is a constant: only its weight gradient is needed.
    """
    fwd = forward_flops(config, seq_len, batch_size, with_decoder)
    const_proj = sum(position_projection_flops(config, lq, lk) for lq, lk, _ in _layer_shapes(config, seq_len))
    if with_decoder:
        n = config.num_decoder_layers * config.decoder_repeats
        const_proj += n * position_projection_flops(config, seq_len, seq_len)
    return 3 * fwd["total"] - const_proj


def flops_per_token(config: FunnelConfig, seq_len: int, batch_size: int = 1, with_decoder: bool = False,
                    train: bool = False) -> float:
    """Total FLOPs divided by the batch's input tokens (batch_size * seq_len)."""
    total = (train_flops(config, seq_len, batch_size, with_decoder) if train
             else forward_flops(config, seq_len, batch_size, with_decoder)["total"])
    return total / float(batch_size * seq_len)


def relative_flops(config: FunnelConfig, baseline: FunnelConfig, seq_len: int, batch_size: int = 1,
                   with_decoder: bool = False) -> float:
    """FLOPs of `config` over FLOPs of `baseline` (e.g. B4-4-4H768 over L12H768) at equal input."""
    a = forward_flops(config, seq_len, batch_size, with_decoder)["total"]
    b = forward_flops(baseline, seq_len, batch_size, with_decoder)["total"]
    return a / b


def single_block_baseline(config: FunnelConfig) -> FunnelConfig:
    """The same model without pooling: one block with every layer (B4-4-4H768 -> L12H768)."""
    layers = sum(s * r for s, r in zip(config.block_sizes, config.block_repeats))
    return config.replace(block_sizes=[layers], block_repeats=[1])


def model_flops_utilization(flops: float, seconds: float, peak_flops_per_second: float) -> float:
    """Achieved FLOP/s over a measured peak (both in FLOP/s); 1.0 means running at peak."""
    if seconds <= 0 or peak_flops_per_second <= 0:
        raise ValueError(f"need positive time and peak, got {seconds} s and {peak_flops_per_second} FLOP/s")
    return flops / seconds / peak_flops_per_second
