"""funnel-glue-submission: the 11 files finetune.py --do_predict writes become the zip the GLUE
server takes; anything missing or wrong is one line naming the file and how to make it."""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from funnel_tf.glue_submission import FILES, main
from funnel_tf.metrics.glue import write_glue_submission

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# submission file -> the metrics key finetune.py writes it under
KEYS = {"CoLA.tsv": "cola", "SST-2.tsv": "sst-2", "MRPC.tsv": "mrpc", "STS-B.tsv": "sts-b",
        "QQP.tsv": "qqp", "MNLI-m.tsv": "mnli-m", "MNLI-mm.tsv": "mnli-mm", "QNLI.tsv": "qnli",
        "RTE.tsv": "rte", "WNLI.tsv": "wnli", "AX.tsv": "ax"}


def write_run(root, name, rows=None, seed=0):
    """What finetune.py --do_predict leaves in <model_dir>/predictions for `name`, written by
    the same writer, with random predictions."""
    rows = FILES[name][2] if rows is None else rows
    rng = np.random.default_rng(seed)
    labels = FILES[name][3]
    preds = rng.uniform(0, 5, rows) if labels is None else rng.integers(0, len(labels), rows)
    folder = os.path.join(root, KEYS[name].split("-m")[0], "predictions")
    return write_glue_submission(KEYS[name], preds, folder)[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name in FILES:
        write_run(str(root), name)
    # --predict_splits=dev output beside them: never taken for a test file
    write_run(str(root / "cola" / "predictions" / "x"), "CoLA.tsv", rows=10)
    os.rename(root / "cola" / "predictions" / "x" / "cola" / "predictions" / "CoLA.tsv",
              root / "cola" / "predictions" / "dev_CoLA.tsv")
    return root


def test_the_zip_holds_the_11_files_at_its_root(runs, tmp_path, capsys):
    out = tmp_path / "glue_submission.zip"
    assert main([f"--predictions_root={runs}", f"--output={out}"]) == 0
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == sorted(FILES)
        for name, (_, _, rows, labels) in FILES.items():
            lines = z.read(name).decode().splitlines()
            assert lines[0] == "index\tprediction" and len(lines) == rows + 1
            assert [int(line.split("\t")[0]) for line in lines[1:]] == list(range(rows))
            if labels is not None:
                assert {line.split("\t")[1] for line in lines[1:]} <= set(labels)
    assert "wrote" in capsys.readouterr().out


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("python -m funnel_tf.glue_submission: error: ")
    return err


def test_missing_ax_says_how_to_make_it(runs, tmp_path, capsys):
    os.rename(runs / "ax" / "predictions" / "AX.tsv", tmp_path / "AX.tsv")
    try:
        err = _error(capsys, [f"--predictions_root={runs}", f"--output={tmp_path / 'g.zip'}"])
    finally:
        os.rename(tmp_path / "AX.tsv", runs / "ax" / "predictions" / "AX.tsv")
    assert "missing 1 of 11" in err and "AX.tsv" in err and "--task=ax" in err
    assert "--init_checkpoint=<the MNLI run's model_dir>" in err
    assert not (tmp_path / "g.zip").exists()


@pytest.mark.parametrize("name, rows, words", [
    ("RTE.tsv", 2999, "2999 predictions, the RTE test set has 3000"),
    ("MNLI-mm.tsv", 9796, "9796 predictions, the MNLI-mm test set has 9847"),
])
def test_wrong_row_count_is_refused(runs, tmp_path, capsys, name, rows, words):
    bad = write_run(str(tmp_path), name, rows=rows)
    err = _error(capsys, [f"--predictions_root={runs}", f"--file={name}={bad}",
                          f"--output={tmp_path / 'g.zip'}"])
    assert words in err and bad in err
    assert not (tmp_path / "g.zip").exists()


def test_wrong_label_strings_and_duplicates_are_refused(runs, tmp_path, capsys):
    bad = tmp_path / "RTE.tsv"
    bad.write_text("index\tprediction\n" + "".join(f"{i}\t1\n" for i in range(3000)))
    err = _error(capsys, [f"--predictions_root={runs}", f"--file=RTE.tsv={bad}",
                          f"--output={tmp_path / 'g.zip'}"])
    assert "RTE.tsv takes one of entailment, not_entailment, found '1'" in err
    twice = tmp_path / "more"
    write_run(str(twice), "WNLI.tsv")
    os.rename(twice, runs / "more")
    try:
        err = _error(capsys, [f"--predictions_root={runs}", f"--output={tmp_path / 'g.zip'}"])
    finally:
        import shutil
        shutil.rmtree(runs / "more")
    assert "WNLI.tsv found 2 times" in err and "--file=WNLI.tsv=PATH" in err


def test_glue_data_dir_gives_the_row_counts(runs, tmp_path, capsys, shared_data):
    """AX's diagnostic.tsv is in the shared GLUE data: its row count is checked against it."""
    bad = write_run(str(tmp_path), "AX.tsv", rows=1103)
    err = _error(capsys, [f"--predictions_root={runs}", f"--file=AX.tsv={bad}",
                          f"--glue_data_dir={shared_data / 'glue'}",
                          f"--output={tmp_path / 'g.zip'}"])
    assert "1103 predictions, the AX test set has 1104" in err


def test_console_script_names_itself():
    code = ("import sys; sys.argv[0] = '/usr/bin/funnel-glue-submission'; "
            "from funnel_tf.entry_points import glue_submission; glue_submission()")
    proc = subprocess.run([sys.executable, "-c", code, "--predictions_root=.", "--output=x.txt"],
                          capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("funnel-glue-submission: error: ") and ".zip" in proc.stderr
