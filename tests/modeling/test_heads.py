"""Heads: output shapes, embedding tying, masked-position gathering, shared embeddings."""

import numpy as np
import pytest

from funnel_tf.config import FunnelConfig
from funnel_tf.modeling import heads

CFG = FunnelConfig(vocab_size=40, block_sizes=[1, 1, 1], num_decoder_layers=1, d_model=16, n_head=2, d_head=8,
                   d_inner=24, hidden_dropout=0.0, attention_dropout=0.0)


def _inputs(batch=2, length=10):
    rng = np.random.RandomState(1)
    ids = rng.randint(0, 40, (batch, length)).astype(np.int32)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


@pytest.fixture(scope="module")
def built():
    """built(cls, **kwargs) -> cls(CFG, **kwargs), one per class and arguments in this module (the
    tests read the models, never change their weights)."""
    cache = {}

    def get(cls, **kwargs):
        key = (cls, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = cls(CFG, **kwargs)
        return cache[key]
    return get


@pytest.mark.parametrize("cls, kwargs, key, shape", [
    (heads.FunnelForMaskedLM, {}, "logits", (2, 10, 40)),
    (heads.FunnelForPreTraining, {}, "logits", (2, 10)),
    (heads.FunnelForSequenceClassification, {"num_labels": 3}, "logits", (2, 3)),
    (heads.FunnelForSequenceClassification, {"num_labels": 1}, "logits", (2, 1)),
    (heads.FunnelForTokenClassification, {"num_labels": 5}, "logits", (2, 10, 5)),
    (heads.FunnelForQuestionAnswering, {}, "start_logits", (2, 10)),
])
def test_head_shapes(cls, kwargs, key, shape, built):
    model = built(cls, **kwargs)
    out = model(_inputs())
    assert out[key].shape == shape
    assert out[key].dtype.name == "float32"
    clone = cls.from_config(model.get_config())
    assert len(clone.weights) == len(model.weights)


def test_multiple_choice_scores_each_choice_independently():
    model = heads.FunnelForMultipleChoice(CFG)
    x = {k: v.reshape(1, 2, 10) for k, v in _inputs().items()}
    out = np.asarray(model(x)["logits"])
    assert out.shape == (1, 2)
    swapped = {k: v[:, ::-1] for k, v in x.items()}
    np.testing.assert_allclose(np.asarray(model(swapped)["logits"])[0], out[0, ::-1], atol=1e-5)


def test_mlm_is_tied_and_gathers_masked_positions(built):
    model = built(heads.FunnelForMaskedLM)
    x = _inputs()
    full = np.asarray(model(x)["logits"])
    pos = np.array([[1, 4], [0, 9]], np.int32)
    gathered = np.asarray(model(x, masked_positions=pos)["logits"])
    np.testing.assert_allclose(gathered, np.take_along_axis(full, pos[:, :, None], axis=1), atol=1e-5)
    assert not any("lm_head" in v.path and "kernel" in v.path for v in model.weights)  # tied, no own matrix


def test_generator_shares_embeddings_with_discriminator(built):
    disc = built(heads.FunnelForPreTraining)
    gen_cfg = CFG.replace(d_model=8, n_head=1, d_inner=12, d_embed=16, mlm_transform=True)
    gen = heads.FunnelForMaskedLM(gen_cfg, embeddings=disc.funnel.embeddings)
    assert gen.funnel.embeddings is disc.funnel.embeddings
    out = gen(_inputs())["logits"]
    assert out.shape == (2, 10, 40)
    assert gen.funnel.encoder.input_projection is not None
