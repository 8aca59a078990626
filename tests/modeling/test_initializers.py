"""Initialisation schemes: the original release's (pretraining from scratch) and HF's (loading)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.config import ConfigError, FunnelConfig, load_config
from funnel_tf.modeling.heads import FunnelForMaskedLM
from funnel_tf.modeling.model import FunnelModel

# The published sizes as pretrained (with the decoder). The encoder-only "-base" configs are not an
# MLM pretraining setup: without decoder layers the MLM input is upsampled + first-block output, two
# LayerNorm'd copies of the [MASK] embedding that the tied output layer scores at ~2 d init_std^2 /
# init_std (~27 for d 768), so their first loss is 11-16 (HF's rule: ~675).
PUBLISHED = ["small", "medium", "intermediate", "large", "xlarge"]


def _weights(model):
    return {v.path: v.numpy() for v in model.weights}


def _tiny(**overrides):
    return load_config("tiny").replace(initializer_std=None, **overrides)


MASK_ID = 103  # BERT uncased [MASK]


def first_mlm_loss(config, batch=2, seq_len=32, predict=5, seed=0):
    """The loss of one float32 forward of a fresh MLM model (what step 1 sees): random tokens,
    `predict` of them per row replaced by [MASK] and predicted."""
    keras.utils.set_random_seed(seed)
    model = FunnelForMaskedLM(config)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, config.vocab_size, (batch, seq_len)).astype("int32")
    positions = np.stack([np.sort(rng.choice(np.arange(1, seq_len), predict, replace=False))
                          for _ in range(batch)]).astype("int32")
    labels = np.take_along_axis(ids, positions, axis=1)
    np.put_along_axis(ids, positions, MASK_ID, axis=1)
    out = model({"input_ids": ids, "attention_mask": np.ones_like(ids),
                 "token_type_ids": np.zeros_like(ids)}, masked_positions=positions)
    return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=out["logits"])))


@pytest.fixture(scope="module")
def tiny_weights():
    """scheme -> the weights of a fresh FunnelModel of _tiny(init_scheme=scheme), built once per
    module ("original" under keras.utils.set_random_seed(3)); read, never modified."""
    keras.utils.set_random_seed(3)
    original = _weights(FunnelModel(_tiny(init_scheme="original")))
    return {"original": original, "hf": _weights(FunnelModel(_tiny()))}


@pytest.mark.parametrize("scheme", ["hf", "original"])
def test_weights_sharing_an_initializer_get_their_own_values(scheme, tiny_weights):
    # q/k/v kernels share one initializer, as do r_w/r_r/r_s biases; an unseeded Keras 3
    # initializer fixes its seed once and gave all of them identical values.
    w = tiny_weights[scheme]
    prefix = next(k for k in w if k.endswith("q_head/kernel"))[:-len("q_head/kernel")]
    q, k, v = (w[prefix + f"{n}_head/kernel"] for n in "qkv")
    assert not np.array_equal(q, k) and not np.array_equal(k, v)
    rw, rr, rs = (w[prefix + n] for n in ("r_w_bias", "r_r_bias", "r_s_bias"))
    assert not np.array_equal(rw, rr) and not np.array_equal(rr, rs)


def test_seeded_builds_are_reproducible(tiny_weights):
    a = tiny_weights["original"]  # built after keras.utils.set_random_seed(3)
    keras.utils.set_random_seed(3)
    b = _weights(FunnelModel(_tiny(init_scheme="original")))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_original_scheme_is_truncated_normal_002_everywhere(tiny_weights):
    w = tiny_weights["original"]
    random = [k for k in w if k.endswith(("kernel", "word_embeddings", "r_w_bias", "r_r_bias",
                                          "r_s_bias", "seg_embed"))]
    assert any(k.endswith("word_embeddings") for k in random) and any("r_kernel" in k for k in random)
    for k in random:
        assert np.abs(w[k]).max() <= 2 * 0.02 + 1e-7, k  # cut at 2 std
        assert w[k].min() < 0 < w[k].max(), k            # centred (HF's r_* are U(0, 0.1))
    flat = np.concatenate([w[k].ravel() for k in random])
    assert abs(flat.std() - 0.02 * 0.8796) < 0.001  # std of N(0, 0.02) truncated at 2 std
    for k in w:
        if k.endswith(("/bias", "beta")) and "r_" not in k:
            assert not w[k].any(), k
        if k.endswith("gamma"):
            assert (w[k] == 1).all(), k


def test_original_scheme_uses_initializer_std_when_set():
    w = _weights(FunnelModel(_tiny(init_scheme="original").replace(initializer_std=0.05)))
    emb = next(v for k, v in w.items() if k.endswith("word_embeddings"))
    assert abs(emb.std() - 0.05 * 0.8796) < 0.002


def test_hf_scheme_is_unchanged(tiny_weights):
    cfg = _tiny()  # initializer_std None: HF's per-shape rule
    assert cfg.init_scheme == "hf"
    w = tiny_weights["hf"]  # FunnelModel(cfg)
    emb = next(v for k, v in w.items() if k.endswith("word_embeddings"))
    assert abs(emb.std() - 1.0) < 0.02
    lin1 = next(v for k, v in w.items() if k.endswith("linear_1/kernel"))  # [64, 256]
    assert abs(lin1.std() - math.sqrt(1 / (64 + 256))) < 0.003
    rw = next(v for k, v in w.items() if k.endswith("r_w_bias"))
    assert rw.min() >= 0 and rw.max() <= 0.1


def test_init_scheme_round_trips_and_bad_values_are_rejected():
    cfg = FunnelConfig(init_scheme="original")
    assert FunnelConfig.from_dict(cfg.to_dict()).init_scheme == "original"
    assert FunnelConfig.from_dict({}).init_scheme == "hf"  # HF config.json files: HF's rule
    with pytest.raises(ConfigError, match="init_scheme must be one of"):
        FunnelConfig(init_scheme="xavier")
    with pytest.raises(ConfigError, match="initializer_std must be positive"):
        FunnelConfig(initializer_std=0.0)


def test_first_mlm_loss_of_small_is_near_ln_vocab_with_the_original_init():
    cfg = load_config("small")
    assert first_mlm_loss(cfg.replace(init_scheme="original")) == pytest.approx(
        math.log(cfg.vocab_size), rel=0.10)
    # HF's rule (N(0, 1) embeddings tied to the output layer) starts far off, ~240-350.
    assert first_mlm_loss(cfg) > 10 * math.log(cfg.vocab_size)


def test_electra_generator_inherits_the_original_init():
    from funnel_tf.tasks.electra import generator_config

    gen = generator_config(load_config("small").replace(init_scheme="original"))
    assert gen.init_scheme == "original"
    assert first_mlm_loss(gen) == pytest.approx(math.log(gen.vocab_size), rel=0.10)


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLISHED)
def test_first_mlm_loss_of_every_published_config_is_near_ln_vocab(name):
    cfg = load_config(name).replace(init_scheme="original")
    assert first_mlm_loss(cfg) == pytest.approx(math.log(cfg.vocab_size), rel=0.10)
