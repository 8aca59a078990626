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


# ------------------------------------------------------------------ flags generated from the run dataclasses
def _parse(cls, *argv):
    """A fresh absl FlagValues with `cls`'s generated flags, parsed from argv; its dataclass back."""
    from absl import flags

    from funnel_tf import flags_from_args

    values = flags.FlagValues()
    flags_from_args.define_flags(cls, values)
    values(["prog", *argv])
    return values, flags_from_args.args_from_flags(cls, values)


def test_every_run_field_is_a_flag_with_its_help():
    import dataclasses

    from funnel_tf.finetuning.args import FinetuneArgs
    from funnel_tf.flags_from_args import flag_names
    from funnel_tf.pretraining.args import PretrainArgs

    pre = flag_names(PretrainArgs)
    assert set(pre) == {f.name for f in dataclasses.fields(PretrainArgs)} - {"flags_text"}
    fin = flag_names(FinetuneArgs)
    assert len(fin) == len(set(fin)) == 59 and {"train_file", "max_seq_length", "jit_compile",
                                                "text_a_column", "strategy", "do_train",
                                                "backend"} <= set(fin)
    values, _ = _parse(FinetuneArgs)
    for name in fin:
        assert len(values[name].help) > 15, name


def test_pretrain_flags_parse_back_into_pretrain_args():
    from funnel_tf.pretraining.args import PretrainArgs

    _, args = _parse(PretrainArgs)
    assert args == PretrainArgs()  # every flag's default is the field's
    _, args = _parse(PretrainArgs, "--train_data=a.txt,b*.txt", "--config_override=d_model=8",
                     "--config_override=n_head=2", "--seq_len=32", "--objective=electra",
                     "--nodeterministic_input", "--strategy=cpu", "--jit_compile=true")
    assert args == PretrainArgs(train_data=["a.txt", "b*.txt"], seq_len=32, objective="electra",
                                config_override=["d_model=8", "n_head=2"], deterministic_input=False,
                                strategy="cpu", jit_compile="true")


def test_finetune_flags_parse_back_into_finetune_args():
    from funnel_tf.finetuning.args import FinetuneArgs

    _, args = _parse(FinetuneArgs, "--task=CSV", "--model_dir=m", "--train_file=t.csv",
                     "--test_file=x.csv", "--text_a_column=1", "--label_column=label",
                     "--label_names=neg,pos", "--clean_text", "--jit_compile=false",
                     "--max_seq_length=64", "--do_train", "--tpu=local")
    assert args.task == "CSV" and args.model_dir == "m" and not args.do_eval and args.do_train
    assert args.files == {"train": "t.csv", "test": "x.csv"} and args.strategy == "tpu"
    assert args.csv_options == {"text_a_column": 1, "text_b_column": None, "label_column": "label",
                                "id_column": None, "label_names": ["neg", "pos"],
                                "regression": False, "has_header": True, "delimiter": None,
                                "clean": True}
    assert args.run["jit_compile"] is False and args.run["keep_checkpoints"] == 2
    assert args.hparams["max_seq_length"] == 64 and args.hparams["batch_size"] is None
    _, args = _parse(FinetuneArgs, "--task=sst-2", "--model_dir=m")
    assert args.csv_options is None and args.strategy == "default" and args.files == {}
    assert args.run["jit_compile"] is None


@pytest.mark.parametrize("script, old, new, value", [
    ("pretrain", "max_seq_length", "seq_len", 64), ("pretrain", "vocab_file", "vocab", "v.txt"),
    ("finetune", "seq_len", "max_seq_length", 64), ("finetune", "vocab", "vocab_file", "v.txt"),
])
def test_old_spellings_still_work_and_warn(script, old, new, value, monkeypatch):
    from absl import logging

    from funnel_tf.finetuning.args import FinetuneArgs
    from funnel_tf.pretraining.args import PretrainArgs

    warnings = []
    monkeypatch.setattr(logging, "warning", lambda msg, *a: warnings.append(msg % a))
    cls = PretrainArgs if script == "pretrain" else FinetuneArgs
    values, args = _parse(cls, f"--{old}={value}", *(["--task=rte", "--model_dir=m"]
                                                     if script == "finetune" else []))
    assert values[new].value == value
    assert (args.hparams["max_seq_length"] if new == "max_seq_length" else getattr(args, new)) == value
    assert warnings == [f"--{old} is deprecated: use --{new} (same meaning)"]
    assert "Deprecated spelling of --" + new in values[old].help
    warnings.clear()
    _parse(cls, f"--{new}={value}", *(["--task=rte", "--model_dir=m"] if script == "finetune" else []))
    assert warnings == []
