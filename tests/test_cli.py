"""Every entry point (pretrain.py, finetune.py, convert, the text tool, each also as its console
script): --help prints to stdout and exits 0; errors name the program as invoked; a stray
argument, a --flagfile or a path that is not UTF-8 is one line on stderr, exit 2, nothing written."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> command line prefix. Console scripts run through funnel_tf.entry_points with argv[0]
# set as the installed wrapper sets it (so no installed script is needed on PATH).
SCRIPTS = {
    "pretrain.py": [sys.executable, os.path.join(REPO, "pretrain.py")],
    "finetune.py": [sys.executable, os.path.join(REPO, "finetune.py")],
    "python -m funnel_tf.convert": [sys.executable, "-m", "funnel_tf.convert"],
    "python -m funnel_tf.text": [sys.executable, "-m", "funnel_tf.text"],
}
for _script, _fn in (("funnel-pretrain", "pretrain"), ("funnel-finetune", "finetune"),
                     ("funnel-convert", "convert"), ("funnel-text", "text")):
    SCRIPTS[_script] = [sys.executable, "-c", f"import sys; sys.argv[0] = '/usr/bin/{_script}'; "
                        f"from funnel_tf.entry_points import {_fn}; {_fn}()"]
ABSL = ("pretrain.py", "finetune.py", "funnel-pretrain", "funnel-finetune")


def run(name, *args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([*SCRIPTS[name], *args], capture_output=True, cwd=cwd or REPO, env=env,
                          timeout=300)


def one_error_line(proc, prog):
    err = proc.stderr.decode("utf-8", "replace").strip()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    head = err.split(": error: ")[0]  # argparse sub-commands add their name: `funnel-text build-vocab`
    assert "\n" not in err and (head == prog or head.startswith(prog + " ")), err[-2000:]
    return err


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_goes_to_stdout_and_exits_0(name, flag):
    proc = run(name, flag)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stderr.decode().strip() == ""
    assert len(out.splitlines()) > 5
    if name in ABSL:  # the script's own docstring, also under the console script
        assert "Funnel-Transformer" in out.splitlines()[0], out[:300]


@pytest.mark.parametrize("name", ABSL)
def test_helpfull_exits_0(name):
    proc = run(name, "--helpfull")
    assert proc.returncode == 0 and "--model_dir" in proc.stdout.decode()


@pytest.mark.parametrize("name, args", [
    ("funnel-finetune", ["--task=csv", "--model_dir=x", "--no_such_flag"]),
    ("funnel-pretrain", ["--batch_size=zero"]),
    ("funnel-convert", ["src"]),
    ("funnel-text", ["build-vocab"]),
])
def test_console_scripts_name_themselves_in_errors(name, args, tmp_path):
    err = one_error_line(run(name, *args, cwd=tmp_path), name)
    assert ".py" not in err.split(":")[0] and "python -m" not in err


@pytest.mark.parametrize("name", ["pretrain.py", "finetune.py", "funnel-finetune"])
def test_stray_positional_argument_is_one_line(name, tmp_path):
    task = [] if name == "pretrain.py" else ["--task=csv"]
    err = one_error_line(run(name, *task, f"--model_dir={tmp_path / 'run'}", "stray",
                             cwd=tmp_path), name)
    assert "'stray'" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["pretrain.py", "finetune.py", "funnel-pretrain"])
def test_flagfile_not_utf8_is_one_line(name, tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_bytes(b"--seed=1\n--model_dir=caf\xe9\n")
    err = one_error_line(run(name, f"--flagfile={flagfile}", cwd=tmp_path), name)
    assert "not valid UTF-8" in err and "line 2" in err
    assert sorted(os.listdir(tmp_path)) == ["run.flags"]


@pytest.mark.parametrize("name, args", [
    ("pretrain.py", [b"--model_dir=%s"]),
    ("finetune.py", [b"--task=csv", b"--model_dir=%s"]),
    ("funnel-finetune", [b"--task=csv", b"--do_train", b"--model_dir=run", b"--train_file=%s"]),
    ("python -m funnel_tf.convert", [b"%s", b"out", b"--to=hf"]),
    ("funnel-text", [b"build-vocab", b"--input=corpus.txt", b"--output=%s"]),
])
def test_path_that_is_not_utf8_is_one_line_and_writes_nothing(name, args, tmp_path):
    bad = os.fsencode(str(tmp_path)) + b"/run-\xff\xfe"
    (tmp_path / "corpus.txt").write_text("some text\n")
    proc = run(name, *[a.replace(b"%s", bad) for a in args], cwd=tmp_path)
    err = one_error_line(proc, name)
    assert "not valid UTF-8" in err and "\\xff" in err
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt"]


def test_pretraining_with_a_vocab_without_mask_is_one_line(tmp_path):
    """[MASK] is needed by masked-LM pretraining only: the error names the token and the use,
    before anything is written."""
    with open(os.path.join(REPO, "data", "demo_vocab.txt"), encoding="utf-8") as f:
        vocab = [t for t in f.read().splitlines() if t != "[MASK]"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    err = one_error_line(run("pretrain.py", f"--vocab={tmp_path / 'vocab.txt'}",
                             f"--model_dir={tmp_path / 'run'}", "--train_steps=2", cwd=tmp_path),
                         "pretrain.py")
    assert "no [MASK]" in err and "masked-LM pretraining" in err
    assert not (tmp_path / "run").exists()
