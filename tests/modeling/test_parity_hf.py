"""Parity with HuggingFace's PyTorch Funnel: committed fixtures (no torch needed) and a live cross-check.

Fixtures come from tools/make_hf_fixtures.py: random-init HF models (biases, LayerNorms and relative
parameters perturbed so a mis-mapped tensor shows), saved with save_pretrained, plus inputs and HF's
outputs. Each case is loaded through our HF loader and must match every hidden state and head output
to 1e-5. Set FUNNEL_PARITY_REPORT=path to also write the per-case max abs diffs as JSON.
"""

import json
import os
import pathlib

import numpy as np
import pytest

from funnel_tf.checkpoints.hf import export_hf, load_hf

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hf"
ATOL = 1e-5


def _case_names():
    index = FIXTURES / "index.json"
    if not index.exists():
        return []
    with open(index) as f:
        return [c["name"] for c in json.load(f)["cases"]]


CASES = _case_names()


@pytest.fixture(scope="module")
def parity_table():
    """Collects case -> max abs diff; printed (pytest -s) and optionally written at module teardown."""
    table = {}
    yield table
    if not table:
        return
    lines = [f"{'case':48s} {'max abs diff':>12s}  worst output"]
    for name, (diff, worst) in sorted(table.items()):
        lines.append(f"{name:48s} {diff:12.2e}  {worst}")
    print("\nHF parity (funnel_tf vs HF PyTorch fixtures)\n" + "\n".join(lines))
    path = os.environ.get("FUNNEL_PARITY_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({k: {"max_abs_diff": d, "worst": w} for k, (d, w) in sorted(table.items())}, f, indent=2)


def _ours(out, key):
    if key.startswith("hidden_states_"):
        return out["hidden_states"][int(key[len("hidden_states_"):])]
    return out[key]


def compare_outputs(model, inputs, expected, num_hidden_states):
    """Max abs diff per expected output; also checks the hidden-state count and every shape."""
    out = model(inputs, output_hidden_states=True)
    assert len(out["hidden_states"]) == num_hidden_states
    diffs = {}
    for key, ref in expected.items():
        got = np.asarray(_ours(out, key))
        assert got.shape == ref.shape, (key, got.shape, ref.shape)
        diffs[key] = float(np.max(np.abs(got.astype(np.float64) - ref)))
    return diffs


@pytest.mark.skipif(not CASES, reason=f"no HF fixtures at {FIXTURES} (run tools/make_hf_fixtures.py)")
@pytest.mark.parametrize("case", CASES or ["none"])
def test_matches_hf_fixture(case, parity_table):
    case_dir = FIXTURES / case
    with open(case_dir / "meta.json") as f:
        meta = json.load(f)
    model = load_hf(str(case_dir))  # class detected from the checkpoint
    assert type(model).__name__ == meta["hf_class"]
    worst = (0.0, "")
    for set_name in [""] + list(meta.get("extra_input_sets", [])):
        suffix = f"_{set_name}" if set_name else ""
        inputs = dict(np.load(case_dir / f"inputs{suffix}.npz"))
        expected = dict(np.load(case_dir / f"outputs{suffix}.npz"))
        head_keys = {"logits", "start_logits", "end_logits"} & set(expected)
        assert bool(head_keys) == (meta["head_class"] is not None)
        diffs = compare_outputs(model, inputs, expected, meta["num_hidden_states"])
        key = max(diffs, key=diffs.get)
        if diffs[key] >= worst[0]:
            worst = (diffs[key], f"{key}{suffix}")
        bad = {k: v for k, v in diffs.items() if v > ATOL}
        assert not bad, f"{case}{suffix}: outputs differ from HF by more than {ATOL}: {bad}"
    parity_table[case] = worst


# ------------------------------------------------------------------------------------------ live check
LIVE_CASES = [
    # (HF class, config overrides, batch, seq_len)
    ("FunnelModel", dict(block_sizes=[2, 1, 1], block_repeats=[1, 2, 1], attention_type="factorized"), 3, 13),
    ("FunnelBaseModel", dict(block_sizes=[1, 1, 1, 1], pooling_type="max", truncate_seq=False), 3, 20),
    ("FunnelModel", dict(block_sizes=[1, 1], separate_cls=False, pool_q_only=False), 2, 9),
    ("FunnelForPreTraining", dict(block_sizes=[1, 1, 1]), 2, 10),
    ("FunnelForSequenceClassification", dict(block_sizes=[1, 2], num_labels=4), 3, 12),
]
# The default suite runs the first live case (today's transformers against our loader and export);
# the others are `slow`: their configurations are the committed fixtures' (base_factorized_max_L16,
# base_factorized_no_pool_q_only_no_truncate_L7, model_no_separate_cls_L8, model_no_pool_q_only_L8,
# head_pretraining_L11, head_seq_cls_L8 above), their exports tests/checkpoints/test_hf.py's bitwise
# round trips, and an export loading in transformers tests/checkpoints/test_convert.py's cross-check.
LIVE_PARAMS = [pytest.param(*case, id=f"{case[0]}-{i}", marks=() if i == 0 else pytest.mark.slow)
               for i, case in enumerate(LIVE_CASES)]


@pytest.mark.reference
@pytest.mark.parametrize("hf_class,overrides,batch,seq_len", LIVE_PARAMS)
def test_live_against_hf_pytorch(tmp_path, hf_class, overrides, batch, seq_len):
    """Random HF model built in-process -> save_pretrained -> our loader; then our export -> HF again."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seq_len)
    cfg = transformers.FunnelConfig(vocab_size=97, d_model=32, n_head=4, d_head=8, d_inner=40,
                                    num_decoder_layers=2, **overrides)
    hf_model = getattr(transformers, hf_class)(cfg).eval()
    with torch.no_grad():  # move biases / LayerNorms / relative params off their constant init
        for name, p in hf_model.named_parameters():
            if p.ndim == 1 or "r_" in name or "seg_embed" in name:
                p.add_(torch.randn_like(p) * 0.1)
    hf_model.save_pretrained(tmp_path / "hf")

    rng = np.random.RandomState(seq_len)
    ids = rng.randint(0, 97, (batch, seq_len)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[-1, seq_len // 2 + 1:] = 0
    types = np.zeros_like(ids)
    types[:, 0] = 2
    types[0, seq_len // 2:] = 1
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    with torch.no_grad():
        ref = hf_model(**{k: torch.as_tensor(v).long() for k, v in inputs.items()}, output_hidden_states=True)

    model = load_hf(str(tmp_path / "hf"))
    out = model(inputs, output_hidden_states=True)
    assert len(out["hidden_states"]) == len(ref.hidden_states)
    for i, (a, b) in enumerate(zip(out["hidden_states"], ref.hidden_states)):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), atol=ATOL, rtol=0, err_msg=f"hidden_states[{i}]")
    if hf_class.startswith("FunnelFor"):
        np.testing.assert_allclose(np.asarray(out["logits"]), ref.logits.numpy(), atol=ATOL, rtol=0)
    else:
        np.testing.assert_allclose(np.asarray(out["last_hidden_state"]), ref.last_hidden_state.numpy(),
                                   atol=ATOL, rtol=0)

    # Our export loads back into HF PyTorch with identical tensors.
    export_hf(model, str(tmp_path / "export"))
    again = getattr(transformers, hf_class).from_pretrained(str(tmp_path / "export")).eval()
    original = hf_model.state_dict()
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, original[name]), name
