"""Issue 20: a finetuning model_dir remembers what run it holds (run.json). A finished SST-2
folder given to another task, or a resume with another --batch_size / --learning_rate, is one
line naming every difference before anything is written; what may change (train length,
cadences) resumes and is logged."""

import dataclasses
import json
import logging

import pytest

from funnel_tf.errors import one_line
from funnel_tf.finetuning.run import run_finetuning
from funnel_tf.engine.run_record import RunMismatchError

from .helpers import DEMO_VOCAB, write_csv_task
from .test_output_text import strict_json


def _listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_a_finetune_folder_refuses_another_run_and_logs_safe_changes(
        finetune_main, micro_config, tmp_path, caplog, capsys):
    """The first run is finetune.py's main (in-process); it also checks that every JSON it
    writes is strict JSON (tests/tasks/test_output_text.py; folded in here to share the run)."""
    import finetune

    config_path = str(tmp_path / "micro.json")
    micro_config.replace(block_sizes=[1, 1], block_repeats=[1, 1], num_decoder_layers=1, d_model=16, d_head=8,
                         d_inner=32).save(config_path)  # 2 one-layer blocks: compiles faster
    files = write_csv_task(str(tmp_path / "data"), n_train=64, n_dev=16, n_test=16)
    run = tmp_path / "run"
    argv = ["--task=csv", f"--train_file={files['train']}", f"--dev_file={files['dev']}",
            f"--test_file={files['test']}", "--text_a_column=text", "--label_column=label",
            f"--config={config_path}", f"--vocab_file={DEMO_VOCAB}", f"--model_dir={run}",
            "--do_train", "--do_eval", "--batch_size=16", "--max_seq_length=16",
            "--learning_rate=3e-3", "--train_steps=2", "--steps_per_loop=2", "--log_every=2",
            "--eval_every=-1"]

    from absl import logging as absl_logging

    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    absl_logging.get_absl_logger().addHandler(handler)
    # One progress record, at the compiling first loop: no speed yet, so no ETA (NaN inside).
    try:
        assert finetune_main(*argv, "--verbosity=0") == 0
    finally:
        absl_logging.get_absl_logger().removeHandler(handler)
    summary = strict_json(capsys.readouterr().out)
    assert summary["train"]["final"]["eta_sec"] is None
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [strict_json(line)["eta_sec"] for line in lines] == [None]
    evaluated = (run / "eval_results.jsonl").read_text().splitlines()
    assert len(evaluated) == 1 and all(strict_json(line) for line in evaluated)
    plan = [m for m in logged if "training rows" in m]
    assert len(plan) == 1 and plan[0].endswith("; evaluating at the end"), logged

    finetune.FLAGS.unparse_flags()  # (resets --verbosity: absl's logger to WARNING)
    finetune.FLAGS(["finetune.py", *argv, "--verbosity=0"])  # INFO again, for caplog below
    flag_args = finetune.args_from_flags()  # the same run as FinetuneArgs, to vary below

    def args(**kw):
        out = dataclasses.replace(flag_args, hparams=dict(flag_args.hparams),
                                  run=dict(flag_args.run))
        out.hparams.update(kw.pop("hparams", {}))
        out.run.update(kw.pop("run", {}))
        return dataclasses.replace(out, **kw)

    record = json.loads((run / "run.json").read_text())
    assert record["kind"] == "finetuning" and record["defining"]["task"] == "csv"
    before = _listing(run)
    with pytest.raises(RunMismatchError) as info:
        run_finetuning(args(hparams=dict(batch_size=8, learning_rate=1e-3),
                            run=dict(seed=5)))
    msg = one_line(info.value)
    assert "\n" not in str(info.value)
    for words in ("batch_size 16 -> 8", "learning_rate 0.003 -> 0.001", "seed 0 -> 5"):
        assert words in msg, msg
    assert _listing(run) == before

    # What may change does, and the log says so (training is complete: nothing recompiles).
    caplog.set_level("INFO")
    summary = run_finetuning(args(run=dict(log_every=1, keep_checkpoints=3)))
    assert summary["train"]["step"] == 2
    assert "resuming with changed log_every 2 -> 1" in caplog.text, caplog.text[-2000:]
    assert "resuming with changed keep_checkpoints 2 -> 3" in caplog.text
    assert json.loads((run / "run.json").read_text())["changeable"]["log_every"] == 1

    # A folder written before run.json (here: made to look like an SST-2 run's) is compared
    # through its task.json: another task is refused even with the same number of classes.
    (run / "run.json").unlink()
    info_json = json.loads((run / "task.json").read_text())
    (run / "task.json").write_text(json.dumps(dict(info_json, task="sst-2")))
    before = _listing(run)
    with pytest.raises(RunMismatchError, match=r"task.json\): task sst-2 -> csv"):
        run_finetuning(args())
    with pytest.raises(RunMismatchError, match="task sst-2 -> csv"):  # evaluating it, too
        run_finetuning(args(do_train=False))
    assert _listing(run) == before
