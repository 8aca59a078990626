"""`Class.from_pretrained(path, dtype=...)` builds the model in that precision policy with the
checkpoint's weights, on every backend (no TF tensors here): every layer takes the policy, the
variables hold the checkpoint's values (cast for "bfloat16"), the hidden states come out in the
compute dtype and stay within bfloat16 rounding of the float32 model. A policy the models do not
compute in is one ModelDTypeError before anything is read."""

import pathlib

import keras
import numpy as np
import pytest

from funnel_tf import FunnelBaseModel, FunnelForSequenceClassification, FunnelModel, load_model
from funnel_tf.errors import UserError
from funnel_tf.modeling.pretrained import ModelDTypeError

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hf"
CASES = {FunnelModel: "model_default_L8", FunnelForSequenceClassification: "head_seq_cls_L8"}
BF16_ATOL = 0.1  # bfloat16 keeps 8 bits of mantissa: hidden states of norm ~1 move by ~1e-2


def _inputs(case):
    return dict(np.load(FIXTURES / case / "inputs.npz"))


def _outputs(model, inputs):
    return {k: np.asarray(keras.ops.convert_to_numpy(v)) for k, v in model(inputs, training=False).items()
            if k != "hidden_states"}


def _policies(model) -> set:
    return {layer.dtype_policy.name for layer in model._flatten_layers(include_self=True)}


def _assert_holds(model, reference, variable_dtype):
    """`model`'s variables hold `reference`'s values, cast to `variable_dtype`."""
    assert len(model.weights) == len(reference.weights)
    for v, r in zip(model.weights, reference.weights):
        assert v.path.split("/", 1)[1] == r.path.split("/", 1)[1]
        assert v.dtype == variable_dtype, v.path
        want = keras.ops.convert_to_numpy(r).astype(variable_dtype)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), want, err_msg=v.path)


@pytest.fixture(scope="module")
def references():
    """cls -> (its float32 model from the HF fixture, that model's outputs): read by every dtype case."""
    cache = {}

    def get(cls):
        if cls not in cache:
            model = cls.from_pretrained(str(FIXTURES / CASES[cls]))
            cache[cls] = model, _outputs(model, _inputs(CASES[cls]))
        return cache[cls]
    return get


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", "bfloat16", "float32"])
@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_from_pretrained_dtype_hf(cls, dtype, references):
    """An HF folder loads in the asked policy with the same weights and close outputs."""
    case = str(FIXTURES / CASES[cls])
    reference, want = references(cls)
    model = cls.from_pretrained(case, dtype=dtype)
    policy = keras.dtype_policies.get(dtype)
    assert _policies(model) == {dtype}
    _assert_holds(model, reference, policy.variable_dtype)
    got = _outputs(model, _inputs(CASES[cls]))
    assert got["last_hidden_state"].dtype == policy.compute_dtype
    for name in want:
        atol = 0.0 if dtype == "float32" else BF16_ATOL
        np.testing.assert_allclose(got[name].astype(np.float32), want[name], atol=atol, err_msg=name)
    if dtype == "mixed_bfloat16" and "logits" in got:
        assert got["logits"].dtype == np.float32  # keras-hub's mixed precision contract


def test_from_pretrained_dtype_native(tmp_path, references):
    """Our own folders: a float32 save loads as bfloat16 (values cast, after the manifest check
    of the saved ones), that bfloat16 save keeps its policy and loads back as float32; a
    different class (the backbone of a full model) takes the policy too."""
    reference = references(FunnelModel)[0]
    folder = str(tmp_path / "fp32")
    reference.save_pretrained(folder)
    bf16 = FunnelModel.from_pretrained(folder, dtype="bfloat16")
    assert _policies(bf16) == {"bfloat16"}
    _assert_holds(bf16, reference, "bfloat16")
    mixed = load_model(folder, dtype="mixed_bfloat16")
    assert _policies(mixed) == {"mixed_bfloat16"}
    _assert_holds(mixed, reference, "float32")

    folder_bf16 = str(tmp_path / "bf16")
    bf16.save_pretrained(folder_bf16)
    assert _policies(FunnelModel.from_pretrained(folder_bf16)) == {"bfloat16"}  # the saved policy
    back = FunnelModel.from_pretrained(folder_bf16, dtype="float32")
    assert _policies(back) == {"float32"}
    _assert_holds(back, bf16, "float32")

    base = FunnelBaseModel.from_pretrained(folder, dtype="mixed_bfloat16")
    assert type(base) is FunnelBaseModel and _policies(base) == {"mixed_bfloat16"}
    inputs = _inputs("model_default_L8")
    assert _outputs(base, inputs)["last_hidden_state"].dtype == "bfloat16"


@pytest.mark.parametrize("dtype", ["float16", "bf16", "int32", "int8_from_float32", 3])
def test_from_pretrained_bad_dtype(dtype, tmp_path):
    """One ModelDTypeError (a UserError) naming the policies, before the path is even looked at."""
    with pytest.raises(ModelDTypeError, match="the models compute in one of") as info:
        FunnelModel.from_pretrained(str(tmp_path / "nowhere"), dtype=dtype)
    assert isinstance(info.value, UserError) and len(str(info.value).splitlines()) == 1
    with pytest.raises(ModelDTypeError):
        load_model(str(FIXTURES / "model_default_L8"), dtype=dtype)


def test_from_pretrained_dtype_policy_object():
    """A keras.DTypePolicy works as well as its name."""
    model = FunnelModel.from_pretrained(str(FIXTURES / "model_default_L8"),
                                        dtype=keras.DTypePolicy("mixed_bfloat16"))
    assert _policies(model) == {"mixed_bfloat16"}
