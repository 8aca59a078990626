"""FunnelModel / FunnelBaseModel: shapes, defaults, XLA, mixed_bfloat16, serialisation, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from funnel_tf.config import ConfigError, FunnelConfig, load_config
from funnel_tf.modeling.model import FunnelBaseModel, FunnelModel

TINY = FunnelConfig(vocab_size=50, block_sizes=[1, 1, 1], num_decoder_layers=1, d_model=16, n_head=2,
                    d_head=8, d_inner=24, hidden_dropout=0.0, attention_dropout=0.0)


def _inputs(batch=2, length=12, vocab=50, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(0, vocab, (batch, length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, -4:] = 0
    types = np.zeros_like(ids)
    types[:, 0] = 2
    types[:, length // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.fixture(scope="module")
def full():
    """One FunnelModel(TINY) (default name, float32) for the tests that only read it."""
    return FunnelModel(TINY)


@pytest.fixture(scope="module")
def full_out(full):
    """`full` on _inputs() with every hidden state: read, never modified."""
    return full(_inputs(), output_hidden_states=True)


@pytest.fixture(scope="module")
def base():
    return FunnelBaseModel(TINY)


def test_shapes_and_hidden_state_count(full_out, base):
    out = full_out
    assert out["last_hidden_state"].shape == (2, 12, 16)
    assert out["encoder_last_hidden_state"].shape == (2, 3, 16)
    # embeddings + 3 encoder layers + (upsampled input + 1 decoder layer), as HF counts them
    assert len(out["hidden_states"]) == 1 + 3 + 2
    assert base(_inputs())["last_hidden_state"].shape == (2, 3, 16)


def test_published_small_parameter_counts():
    """Counted on uninitialised variables (a StatelessScope defers the ~130M random draws): the
    same layers and variable shapes as a real build, without its ~4 CPU s per model."""
    from keras.src.backend.common import global_state

    small = load_config("small")
    # Keras keeps deferred variables in a global list that the next scope would initialise: restore it.
    pending = list(global_state.get_global_attribute("uninitialized_variables", []) or [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            assert FunnelModel(small).count_params() == 130_973_184
            assert FunnelBaseModel(small).count_params() == 115_611_648
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


def test_default_mask_and_types_match_explicit(full):
    ids = _inputs()["input_ids"]
    a = full({"input_ids": ids})["last_hidden_state"]
    b = full({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
    np.testing.assert_allclose(a.numpy(), b["last_hidden_state"].numpy(), atol=1e-6)


def test_padding_does_not_leak_into_real_tokens():
    """Changing ids under padding must not change real positions of the encoder's first block."""
    model = FunnelBaseModel(TINY.replace(block_sizes=[1], block_repeats=None))
    x = _inputs()
    y = {k: v.copy() for k, v in x.items()}
    y["input_ids"][1, -4:] = (y["input_ids"][1, -4:] + 7) % 50
    a = model(x)["last_hidden_state"].numpy()[1, :-4]
    b = model(y)["last_hidden_state"].numpy()[1, :-4]
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.needs_host_xla
def test_xla_matches_eager_and_train_step_compiles():
    """One XLA compile: the train step's forward (training mode, TINY's dropout rates are 0: the
    inference computation) gives the eager inference outputs, and every weight gets a gradient.
    Two blocks (one pooling) and one decoder layer: every layer kind, fewer to compile."""
    model = FunnelModel(TINY.replace(block_sizes=[1, 1], block_repeats=None))
    x = {k: tf.constant(v) for k, v in _inputs().items()}
    eager = model(x)["last_hidden_state"].numpy()

    opt = keras.optimizers.Adam(1e-3)
    # Slots made up front: a first apply_gradients inside the tf.function would create them there,
    # and TF traces a function that creates variables twice (~5 s more for the same compile).
    opt.build(model.trainable_variables)

    @tf.function(jit_compile=True)
    def step(inp):
        with tf.GradientTape() as tape:
            out = model(inp, training=True)["last_hidden_state"]  # [batch, seq, d_model]
            loss = tf.reduce_mean(tf.square(out))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, grads, out

    loss, grads, xla = step(x)
    np.testing.assert_allclose(eager, xla.numpy(), atol=1e-5)
    assert np.isfinite(loss.numpy())
    missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.needs_host_xla
def test_mixed_bfloat16_close_to_float32():
    cfg = TINY.replace(block_sizes=[1, 1], block_repeats=None, d_model=32, n_head=4, d_head=8, d_inner=64, initializer_std=0.02)
    ref = FunnelModel(cfg)
    x = _inputs()
    want = ref(x)["last_hidden_state"].numpy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = FunnelModel(cfg)
        model.set_weights(ref.get_weights())
        got = tf.function(lambda i: model(i)["last_hidden_state"], jit_compile=True)(
            {k: tf.constant(v) for k, v in x.items()})
        assert got.dtype == tf.bfloat16
        got = tf.cast(got, tf.float32).numpy()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(got).all()
    # LayerNorm-ed outputs are O(1); bf16 has an 8-bit mantissa (~4e-3 relative). Measured: ~0.03-0.06.
    assert np.abs(got - want).max() < 0.15
    assert np.abs(got - want).mean() < 0.02


def test_too_short_sequence_is_rejected_with_reason(base):
    with pytest.raises(ConfigError, match="too short"):
        base(_inputs(length=4))


def test_get_config_round_trip(full, full_out):
    clone = FunnelModel.from_config(full.get_config())
    clone.set_weights(full.get_weights())
    np.testing.assert_allclose(full_out["last_hidden_state"].numpy(),
                               clone(_inputs())["last_hidden_state"].numpy(), atol=1e-6)
    assert clone.config == full.config


@pytest.mark.parametrize("kind", ["base", "full", "seq_cls"])
def test_keras_file_round_trip(kind, tmp_path, request):
    """model.save("x.keras") -> keras.saving.load_model gives the same class, config and outputs,
    with no custom_objects: every class is registered as "funnel_tf>ClassName"."""
    from funnel_tf.modeling.heads import FunnelForSequenceClassification

    model = (FunnelForSequenceClassification(TINY, num_labels=3) if kind == "seq_cls"
             else request.getfixturevalue(kind))
    x = _inputs()
    want = model(x)
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    assert type(loaded) is type(model) and loaded.config == model.config
    got = loaded(x)
    key = "logits" if kind == "seq_cls" else "last_hidden_state"
    np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-6)
    assert keras.saving.get_registered_name(type(model)) == f"funnel_tf>{type(model).__name__}"
    assert model.get_config()["trainable"] is True  # Keras' own keys come from super().get_config()


def test_eager_calls_on_several_lengths_do_not_warn_about_retracing(caplog):
    """The per-shape XLA kernels retrace on purpose; TF's retracing warning would only be noise."""
    import logging

    model = FunnelModel(TINY.replace(block_sizes=[1, 1], block_repeats=None))  # one pooling: fewer shapes to compile per length
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for length in range(8, 14):  # TF warns once 5 of the last 10 calls traced
            model(_inputs(length=length))
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_variable_paths_name_parameter_layers(full):
    paths = [v.path for v in full.weights]
    assert "funnel_model/embeddings/word_embeddings" in paths
    assert any(p.startswith("funnel_model/encoder/layer_2/") for p in paths)
    assert any(p.startswith("funnel_model/decoder/layer_3/") for p in paths)  # decoder continues the numbering
    assert len(set(paths)) == len(paths)


def test_default_names_are_keras_style_and_old_weight_files_still_load(tmp_path, full, base):
    """Keras names a layer after its class in snake case; the name is not part of a .weights.h5
    file, so weights saved under the old default name ("funnel") load into the new one."""
    assert full.name == "funnel_model"
    assert base.name == "funnel_base_model"
    for cls in (FunnelModel, FunnelBaseModel):
        old = cls(TINY, name="funnel")
        path = str(tmp_path / f"{cls.__name__}.weights.h5")
        old.save_weights(path)
        new = cls(TINY)
        new.load_weights(path)
        np.testing.assert_array_equal(new(_inputs())["last_hidden_state"], old(_inputs())["last_hidden_state"])


def test_dtype_argument_reaches_every_sublayer(full_out):
    """FunnelModel(config, dtype=policy): every layer inside computes in it (not only the model)."""
    model = FunnelModel(TINY, dtype="mixed_bfloat16")
    layers = list(model._flatten_layers(include_self=True))
    assert len(layers) > 20  # embeddings, encoder, decoder, their layers, dense, norms, dropouts
    assert {layer.dtype_policy.name for layer in layers} == {"mixed_bfloat16"}
    assert model(_inputs())["last_hidden_state"].dtype == "bfloat16"
    assert full_out["last_hidden_state"].dtype == "float32"  # FunnelModel(TINY): the global policy


def test_factorized_equals_relative_shift(full, full_out):
    """Same weights, two formulations of the positional term: equal up to float rounding."""
    b = FunnelModel(TINY.replace(attention_type="factorized"))
    b.set_weights(full.get_weights())
    np.testing.assert_allclose(full_out["last_hidden_state"].numpy(), b(_inputs())["last_hidden_state"].numpy(),
                               atol=2e-5)


def test_tf_train_checkpoint_holds_every_weight(tmp_path, full):
    """Plain tf.train.Checkpoint must see every layer (Keras-tracked lists alone are invisible to it)."""
    model = full
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    saved = [n for n, _ in tf.train.list_variables(path) if n.endswith("VARIABLE_VALUE")]
    assert len(saved) >= len(model.weights)
    clone = FunnelModel(TINY)
    tf.train.Checkpoint(model=clone).restore(path).assert_existing_objects_matched()
    for a, b in zip(model.weights, clone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
