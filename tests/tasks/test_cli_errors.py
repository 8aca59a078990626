"""finetune.py's own main: every bad flag or file is one line `finetune.py: error: ...` on stderr
and exit status 2, before model_dir is created or changed (flags that used to surface as a
traceback mid-run, or not at all: nan/inf numbers, a negative seed, steps_per_loop 0, ...)."""

import os

import pytest

from tests.tasks.helpers import DEMO_VOCAB, write_csv_task


@pytest.fixture
def argv(micro_config, tmp_path):
    config_path = tmp_path / "micro.json"
    micro_config.save(str(config_path))
    files = write_csv_task(str(tmp_path / "data"))
    return ["--task=csv", f"--train_file={files['train']}", f"--dev_file={files['dev']}",
            "--text_a_column=text", "--label_column=label", f"--config={config_path}",
            f"--vocab_file={DEMO_VOCAB}", f"--model_dir={tmp_path / 'run'}", "--do_train",
            "--do_eval", "--batch_size=16", "--max_seq_length=16"]


@pytest.mark.parametrize("flags, words", [
    (["--batch_size=0"], "--batch_size must be >= 1, got 0"),
    (["--eval_batch_size=-2"], "--eval_batch_size must be >= 1, got -2"),
    (["--learning_rate=nan"], "--learning_rate must be a finite number > 0, got nan"),
    (["--epochs=inf"], "--epochs must be a finite number > 0, got inf"),
    (["--warmup_steps=-1"], "--warmup_steps must be >= 0, got -1"),
    (["--weight_decay=-0.1"], "--weight_decay must be a finite number >= 0, got -0.1"),
    (["--seed=-1"], "--seed must be in [0, 2**31 - 1), got -1"),
    (["--steps_per_loop=0"], "--steps_per_loop must be >= 1, got 0"),
    (["--keep_checkpoints=0"], "--keep_checkpoints must be >= 1, got 0"),
    (["--max_train_examples=-3"], "--max_train_examples must be >= 0, got -3"),
    (["--max_train_examples=4"], "4 training rows in"),
])
def test_bad_flag_is_one_line_exit_2_and_writes_nothing(finetune_main, argv, tmp_path, capsys,
                                                        flags, words):
    assert finetune_main(*argv, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("finetune.py: error: ") and "\n" not in err, err
    assert words in err
    assert not (tmp_path / "run").exists()


def test_export_over_the_model_dir_is_refused_and_the_run_kept(finetune_main, argv, tmp_path,
                                                                capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval_results.jsonl").write_text('{"step": 100}\n')
    assert finetune_main(*argv, f"--export_dir={run}", "--overwrite_export") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("finetune.py: error: --export_dir") and "overlap" in err
    assert os.listdir(run) == ["eval_results.jsonl"]


def test_predictions_dir_that_is_a_file_is_refused_before_training(finetune_main, argv,
                                                                   tmp_path, capsys):
    (tmp_path / "preds").write_text("not a folder")
    assert finetune_main(*argv, "--do_predict", f"--test_file={tmp_path / 'data' / 'test.tsv'}",
                         f"--predictions_dir={tmp_path / 'preds'}") == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_exporting_an_untrained_model_is_refused(finetune_main, argv, tmp_path, capsys):
    argv = [a for a in argv if a not in ("--do_train", "--do_eval")]
    assert finetune_main(*argv, f"--export_dir={tmp_path / 'export'}") == 2
    assert "it would export an untrained model" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "export").exists()


def test_missing_test_file_says_how_to_predict_other_splits(finetune_main, micro_config, tmp_path,
                                                           capsys):
    """A GLUE folder without test.tsv (as the shared data's RTE): --do_predict names the split
    and --predict_splits, before anything is written."""
    rte = tmp_path / "glue" / "RTE"
    rte.mkdir(parents=True)
    rows = "".join(f"{i}\tthe river {i}\tthe bridge\t{'entailment' if i % 2 else 'not_entailment'}\n"
                   for i in range(8))
    for split in ("train", "dev"):
        (rte / f"{split}.tsv").write_text("index\tsentence1\tsentence2\tlabel\n" + rows)
    config_path = tmp_path / "micro.json"
    micro_config.save(str(config_path))
    assert finetune_main("--task=rte", f"--data_dir={tmp_path / 'glue'}", f"--config={config_path}",
                         f"--vocab_file={DEMO_VOCAB}", f"--model_dir={tmp_path / 'run'}",
                         "--do_train", "--do_predict") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "test.tsv" in err
    assert "--do_predict reads test" in err and "--predict_splits=dev" in err
    assert not (tmp_path / "run").exists()
