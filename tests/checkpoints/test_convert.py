"""`python -m funnel_tf.convert`: every supported direction on real fixtures, and clean failures."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from funnel_tf import convert
from funnel_tf.checkpoints import load_model

REPO = pathlib.Path(__file__).resolve().parents[2]
HF_FIXTURES = REPO / "tests" / "fixtures" / "hf"


def hf_case(name):
    path = HF_FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"HF fixture {name} not found (run tools/make_hf_fixtures.py)")
    return path


def original_case(shared_data, name):
    path = shared_data / "original_tf1" / name
    if not path.is_dir():
        pytest.skip(f"original oracle {name} not found")
    return path


@pytest.fixture(scope="module")
def electra_as_hf(shared_data, tmp_path_factory):
    """The ELECTRA oracle converted to HF format once (`--to hf --allow_mask_pooling_change`, with
    the reload check): read by the conversion test and by the transformers cross-check."""
    src = original_case(shared_data, "B2-1-1_D2_sepcls_mean_electra")
    dst = tmp_path_factory.mktemp("electra") / "hf"
    code = convert.main([str(src), str(dst), "--to", "hf", "--allow_mask_pooling_change"])
    return src, dst, code


def test_help_runs_without_loading_tensorflow():
    code = ("import sys; from funnel_tf import convert\n"
            "try:\n    convert.main(['--help'])\nexcept SystemExit as e:\n    code = e.code\n"
            "assert 'tensorflow' not in sys.modules, 'convert --help imported tensorflow'\nsys.exit(code)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "--to {native,hf}" in res.stdout and "--allow_missing" in res.stdout and "--model_class" in res.stdout


def test_hf_to_native_to_hf(tmp_path, capsys):
    src = hf_case("head_pretraining_L11")
    assert convert.main([str(src), str(tmp_path / "native"), "--to", "native"]) == 0
    assert convert.main([str(tmp_path / "native"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    out = capsys.readouterr().out
    assert "max abs output difference 0" in out
    before, after = load_file(str(src / "model.safetensors")), load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert sorted(before) == sorted(after)
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["architectures"] == ["FunnelForPreTraining"] and cfg["model_type"] == "funnel"


def test_hf_body_to_new_head(tmp_path, capsys):
    src = hf_case("model_default_L8")
    args = [str(src), str(tmp_path / "tok"), "--to", "native", "--model_class", "token_cls", "--num_labels", "7"]
    assert convert.main(args) == 2
    assert "allow_missing" in capsys.readouterr().err
    assert convert.main(args + ["--allow_missing", "head"]) == 0
    assert "left at initialisation" in capsys.readouterr().out
    model = load_model(str(tmp_path / "tok"))
    assert type(model).__name__ == "FunnelForTokenClassification" and model.num_labels == 7


def test_original_to_native_and_hf(tmp_path, electra_as_hf, capsys):
    src, hf_dir, code = electra_as_hf
    assert convert.main([str(src), str(tmp_path / "native"), "--to", "native"]) == 0
    assert convert.main([str(src), str(tmp_path / "hf"), "--to", "hf"]) == 2
    assert "--allow_mask_pooling_change" in capsys.readouterr().err
    assert code == 0  # with --allow_mask_pooling_change
    raw = dict(np.load(src / "inputs.npz"))
    inputs = {"input_ids": raw["input_ids"], "attention_mask": (1 - raw["input_mask"]).astype(np.int32),
              "token_type_ids": raw["seg_id"]}
    ref = np.load(src / "outputs.npz")["binary_logits"]
    for out_dir in (tmp_path / "native", hf_dir):
        model = load_model(str(out_dir))
        assert type(model).__name__ == "FunnelForPreTraining"
        np.testing.assert_allclose(-np.asarray(model(inputs)["logits"]), ref, atol=1e-5, rtol=0)


def test_original_to_hf_refuses_what_hf_cannot_express(tmp_path, shared_data, capsys):
    src = original_case(shared_data, "B1x2-2_D1x2_nosep_max_fullpool_emb24_mlm")
    assert convert.main([str(src), str(tmp_path / "hf"), "--to", "hf"]) == 2
    err = capsys.readouterr().err
    assert "cannot export to HuggingFace format" in err and "d_embed=24" in err
    assert not (tmp_path / "hf" / "model.safetensors").exists()
    # ... while our own format holds it exactly.
    assert convert.main([str(src), str(tmp_path / "native"), "--to", "native"]) == 0
    assert "max abs output difference 0" in capsys.readouterr().out


def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys):
    assert convert.main([str(tmp_path / "absent"), str(tmp_path / "out"), "--to", "native"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    src = hf_case("model_default_L8")
    assert convert.main([str(src), str(tmp_path / "out"), "--to", "native", "--model_class", "nope"]) == 2
    assert "unknown model class 'nope'" in capsys.readouterr().err
    assert convert.main([str(src), str(tmp_path / "out"), "--to", "hf", "--net_config", "x.json"]) == 2
    assert "only apply to original" in capsys.readouterr().err


@pytest.mark.reference
def test_exported_hf_checkpoint_loads_in_transformers(electra_as_hf):
    """original -> hf with our CLI, then HF PyTorch reproduces the original code's ELECTRA logits.
    (--no_check is tests/test_convert_cli.py's.)"""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.disable_progress_bar()
    src, hf_dir, code = electra_as_hf
    assert code == 0
    model = transformers.FunnelForPreTraining.from_pretrained(str(hf_dir)).eval()
    raw = dict(np.load(src / "inputs.npz"))
    with torch.no_grad():
        logits = model(input_ids=torch.as_tensor(raw["input_ids"]).long(),
                       attention_mask=torch.as_tensor(1 - raw["input_mask"]).long(),
                       token_type_ids=torch.as_tensor(raw["seg_id"]).long()).logits.numpy()
    np.testing.assert_allclose(-logits, np.load(src / "outputs.npz")["binary_logits"], atol=1e-5, rtol=0)
