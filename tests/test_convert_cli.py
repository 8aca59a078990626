"""`python -m funnel_tf.convert` never leaves a mix of an old and a new model in its destination:
an existing non-empty destination is refused unless --overwrite, which clears it first, and only
when it holds nothing but model files (and is not the source)."""

import os
import pathlib

import pytest

from funnel_tf import convert

REPO = pathlib.Path(__file__).resolve().parents[1]
SRC = REPO / "tests" / "fixtures" / "hf" / "model_default_L8"


@pytest.fixture
def src():
    if not SRC.is_dir():
        pytest.skip(f"HF fixture {SRC} not found (run tools/make_hf_fixtures.py)")
    return str(SRC)


def _convert(capsys, *argv):
    code = convert.main([*argv, "--to", "native", "--no_check"])
    return code, capsys.readouterr().err.strip().splitlines()


def _old_model_folder(path):
    path.mkdir()
    for name, text in (("task.json", '{"task": "sst-2"}'), ("vocab.txt", "[PAD]\n"),
                       ("config.json", "{}"), ("model.weights.h5", "old")):
        (path / name).write_text(text)
    return sorted(os.listdir(path))


def test_existing_model_folder_is_refused_without_overwrite(tmp_path, src, capsys):
    dst = tmp_path / "dst"
    before = _old_model_folder(dst)
    code, err = _convert(capsys, src, str(dst))
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"python -m funnel_tf.convert: error: destination {dst} is not empty")
    assert "--overwrite" in err[0]
    assert sorted(os.listdir(dst)) == before and (dst / "model.weights.h5").read_text() == "old"


def test_overwrite_replaces_the_whole_model_folder(tmp_path, src, capsys):
    dst = tmp_path / "dst"
    _old_model_folder(dst)
    code, err = _convert(capsys, src, str(dst), "--overwrite")
    assert code == 0, err
    names = sorted(os.listdir(dst))
    assert "task.json" not in names and "vocab.txt" not in names  # no stale files beside new weights
    assert names == ["config.json", "funnel_tf.json", "model.weights.h5"]


@pytest.mark.parametrize("extra", ["subdir", "notes.md"])
def test_overwrite_refuses_a_folder_that_is_not_a_model(tmp_path, src, capsys, extra):
    dst = tmp_path / "dst"
    _old_model_folder(dst)
    if extra == "subdir":
        (dst / extra).mkdir()
    else:
        (dst / extra).write_text("my notes")
    before = sorted(os.listdir(dst))
    code, err = _convert(capsys, src, str(dst), "--overwrite")
    assert code == 2 and len(err) == 1 and "does not look like a model folder" in err[0], err
    assert extra in err[0] and sorted(os.listdir(dst)) == before


def test_overwrite_never_deletes_the_source(tmp_path, src, capsys):
    copy = tmp_path / "native"
    assert _convert(capsys, src, str(copy))[0] == 0
    before = sorted(os.listdir(copy))
    code, err = _convert(capsys, str(copy), str(copy), "--overwrite")
    assert code == 2 and len(err) == 1 and "would delete the source" in err[0], err
    assert sorted(os.listdir(copy)) == before


def test_destination_that_is_a_file_is_refused(tmp_path, src, capsys):
    dst = tmp_path / "dst"
    dst.write_text("a file")
    code, err = _convert(capsys, src, str(dst))
    assert code == 2 and len(err) == 1 and "is not a directory" in err[0], err
    assert dst.read_text() == "a file"


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        convert.main(["a", "b"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "python -m funnel_tf.convert: error: the following arguments are required: --to (see --help)"]
