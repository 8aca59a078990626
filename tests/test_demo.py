"""demo.py, the README's first command, end to end in a subprocess on a short setting: pretrain,
generated task, finetune with evaluation, predictions, export, and the reloaded SavedModel's answers."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # ~1-2 min on 2 cores: two real runs and an export
def test_demo_runs_the_whole_pipeline(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "demo.py"), f"--out_dir={out}", "--pretrain_steps=20",
         "--num_train=200", "--finetune_epochs=1"],
        capture_output=True, text=True, timeout=900, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "=== demo results ===" in proc.stdout and "[4/4]" in proc.stdout
    summary = json.load(open(out / "demo_summary.json", encoding="utf-8"))
    assert summary["train"]["step"] > 0 and summary["evaluations"]
    assert 0.0 <= summary["best"]["value"] <= 1.0
    assert (out / "export" / "saved_model.pb").exists()
    answers = [line.split()[0] for line in proc.stdout.splitlines() if "(p_pos " in line]
    assert len(answers) == 3 and set(answers) <= {"neg", "pos"}
