"""run_pretraining: every user error is a UserError raised before model_dir is touched; raw-text
records are rebuilt when their inputs change; the init checkpoint is checked up front; the run holds
the model_dir lock. (Training itself is covered by tests/test_pretrain.py and tests/engine/ and tests/pretraining/.)"""

import json
import os
import pathlib

import pytest
import tensorflow as tf

from funnel_tf.config import load_config
from funnel_tf.errors import UserError, one_line
from funnel_tf.pretraining import inputs
from funnel_tf.tasks.pretraining import pretraining_task
from funnel_tf.engine import checkpointing
from funnel_tf.pretraining.args import PretrainArgs
from funnel_tf.pretraining.run import check_init_checkpoint, run_pretraining
from funnel_tf.engine.run_lock import ModelDirLock, ModelDirLockedError

REPO = pathlib.Path(__file__).resolve().parents[2]
DEMO_CORPUS = REPO / "data" / "demo_corpus.txt"
DEMO_VOCAB = str(REPO / "data" / "demo_vocab.txt")


def _text(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def _case(tmp_path, case):
    """PretrainArgs for one bad-input case (small settings, so nothing here trains)."""
    base = dict(model_dir=str(tmp_path / "run"), train_steps=2)
    text = dict(base, vocab=DEMO_VOCAB, config="tiny", seq_len=32, batch_size=4)
    if case == "batch_size_0":
        return PretrainArgs(batch_size=0, **base), "--batch_size=0: must be an integer >= 1"
    if case == "seq_len_too_short":
        return PretrainArgs(seq_len=4, **base), "sequence length 4 is too short for 3 blocks"
    if case == "override_wrong_type":
        return (PretrainArgs(config_override=["d_model=big"], **base),
                "--config_override: FunnelConfig: d_model must be an integer, got 'big'")
    if case == "override_unknown":
        return (PretrainArgs(config_override=["d_modle=32"], **base),
                "unknown fields ['d_modle'] (did you mean d_model?)")
    if case == "override_no_value":
        return PretrainArgs(config_override=["d_model"], **base), "expected key=value"
    if case == "config_file_wrong_type":
        cfg = json.loads((REPO / "configs" / "tiny.json").read_text())
        cfg["n_head"] = [2, 2]
        path = _text(tmp_path, "cfg.json", json.dumps(cfg).encode())
        return PretrainArgs(config=path, **base), f"{path}: FunnelConfig: n_head must be an integer"
    if case == "vocab_missing":
        return PretrainArgs(vocab=str(tmp_path / "nope.txt"), **base), "vocab file not found"
    if case == "vocab_empty":
        return PretrainArgs(vocab=_text(tmp_path, "v.txt", b""), **base), "empty vocab file"
    if case == "vocab_without_specials":
        return (PretrainArgs(vocab=_text(tmp_path, "v.txt", b"a\nb\n"), **base),
                "the vocab has no [UNK] (or <unk>) token")
    if case == "empty_corpus":
        return (PretrainArgs(train_data=[_text(tmp_path, "c.txt", b"\n \n")], **text),
                "the corpus is empty")
    if case == "binary_corpus":
        return (PretrainArgs(train_data=[_text(tmp_path, "c.txt", b"PK\x03\x04\x00\x00zip")], **text),
                "looks like a binary file")
    if case == "text_as_records":
        return (PretrainArgs(train_data=[str(DEMO_CORPUS)], train_data_format="tfrecord", **text),
                "not a pretraining TFRecord of seq_len 32")
    if case == "empty_records":
        path = tmp_path / "empty.tfrecord"
        with tf.io.TFRecordWriter(str(path)):
            pass
        return PretrainArgs(train_data=[str(path)], **text), "record file(s) hold no example"
    if case == "num_predict_too_large":
        return PretrainArgs(num_predict=500, **base), "num_predict must be between 1 and 61"
    if case == "unknown_fallback_encoding":
        return (PretrainArgs(train_data=[str(DEMO_CORPUS)], fallback_encoding="nope", **text),
                "unknown fallback encoding 'nope'")
    if case == "learning_rate_nan":
        return PretrainArgs(learning_rate=float("nan"), **base), "--learning_rate=nan"
    if case == "vocab_without_mask":  # [MASK] is needed by masked-LM pretraining only
        with open(REPO / "data" / "demo_vocab.txt", encoding="utf-8") as f:
            vocab = [t for t in f.read().splitlines() if t != "[MASK]"]
        path = _text(tmp_path, "v.txt", ("\n".join(vocab) + "\n").encode())
        return (PretrainArgs(vocab=path, **base),
                "no [MASK] (or <mask>) token, needed for masked-LM pretraining")
    if case == "no_files_match":
        return (PretrainArgs(train_data=[str(tmp_path / "none-*.tfrecord")], **base),
                "no files match")
    if case == "model_dir_missing":  # the whole line (once tests/test_pretrain.py's subprocess)
        return (PretrainArgs(train_data=["x.txt"]),
                "--model_dir is required with --train_data")
    raise AssertionError(case)


@pytest.mark.parametrize("case", [
    "batch_size_0", "seq_len_too_short", "override_wrong_type", "override_unknown",
    "override_no_value", "config_file_wrong_type", "vocab_missing", "vocab_empty",
    "vocab_without_specials", "empty_corpus", "binary_corpus", "text_as_records",
    "num_predict_too_large", "learning_rate_nan", "unknown_fallback_encoding", "empty_records",
    "vocab_without_mask", "no_files_match", "model_dir_missing"])
def test_user_errors_are_raised_before_model_dir_is_created(tmp_path, case):
    args, words = _case(tmp_path, case)
    with pytest.raises(UserError) as info:
        run_pretraining(args)
    assert words in one_line(info.value), one_line(info.value)
    if case == "model_dir_missing":
        assert one_line(info.value) == words
    assert not (tmp_path / "run").exists()


def test_a_model_dir_that_cannot_be_made_is_refused_before_any_folder_is_made(tmp_path):
    """Issue 20: a --model_dir under a regular file, or with a name over 255 bytes, failed late
    (leaving empty parent folders behind)."""
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(UserError) as info:
        run_pretraining(PretrainArgs(model_dir=str(tmp_path / "plain" / "run"), train_steps=2))
    assert one_line(info.value) == (f"--model_dir {tmp_path / 'plain' / 'run'} lies under "
                                    f"{tmp_path / 'plain'}, which is a file, not a folder")
    with pytest.raises(UserError, match="is 256 bytes, longer than the 255"):
        run_pretraining(PretrainArgs(model_dir=str(tmp_path / "a" / ("x" * 256) / "run"),
                                     train_steps=2))
    assert sorted(os.listdir(tmp_path)) == ["plain"]


def test_a_failed_run_leaves_an_existing_model_dir_as_it_was(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match="batch_size"):
        run_pretraining(PretrainArgs(model_dir=str(run), batch_size=0))
    assert sorted(os.listdir(run)) == ["notes.txt"]


def test_corpus_too_short_for_an_example_removes_the_model_dir_it_made(tmp_path):
    corpus = _text(tmp_path, "c.txt", b"one short line.\nand another one.\n")
    with pytest.raises(UserError, match="no complete 32-token example"):
        run_pretraining(PretrainArgs(train_data=[corpus], model_dir=str(tmp_path / "run"),
                                     vocab=DEMO_VOCAB, config="tiny", seq_len=32, batch_size=4))
    assert not (tmp_path / "run").exists()


def test_too_short_corpus_leaves_an_existing_model_dir_as_it_was(tmp_path):
    corpus = _text(tmp_path, "c.txt", b"one short line.\nand another one.\n")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(UserError, match="no complete 32-token example"):
        run_pretraining(PretrainArgs(train_data=[corpus], model_dir=str(run), vocab=DEMO_VOCAB,
                                     config="tiny", seq_len=32, batch_size=4))
    assert os.listdir(run) == []


def test_a_locked_model_dir_is_refused_before_anything_is_written(tmp_path):
    run = tmp_path / "run"
    with ModelDirLock(str(run)):
        with pytest.raises(ModelDirLockedError, match="is in use by another run"):
            run_pretraining(PretrainArgs(model_dir=str(run), train_steps=2))
        assert sorted(os.listdir(run)) == ["RUN_LOCK"]


# ----------------------------------------------------------------------- init checkpoint
def _training_style_checkpoint(tmp_path, config):
    """A checkpoint laid out like the engine's (weights/model/<variable path>), without training."""
    objective = pretraining_task("mlm", config)
    objective.build()
    prefix = str(tmp_path / "init" / "ckpt-1")
    tf.train.Checkpoint(weights={"model": checkpointing.model_weights(objective.backbone)}).write(prefix)
    return prefix


def test_init_checkpoint_of_another_size_is_one_line_naming_the_tensors(tmp_path, tiny_config):
    tiny = tiny_config.replace(vocab_size=919)
    prefix = _training_style_checkpoint(tmp_path, tiny.replace(d_inner=64))
    assert "backbone" in check_init_checkpoint(_training_style_checkpoint(
        tmp_path / "same", tiny), "mlm", tiny)
    with pytest.raises(checkpointing.CheckpointError) as info:
        check_init_checkpoint(prefix, "mlm", tiny)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 700, msg
    assert "of 163 backbone tensors have another shape" in msg
    assert "ffn/linear_1/kernel [64, 64] vs [64, 256]" in msg
    # Through run_pretraining: the same error, before model_dir exists.
    with pytest.raises(checkpointing.CheckpointError, match="does not fit this model"):
        run_pretraining(PretrainArgs(model_dir=str(tmp_path / "run"), init_checkpoint=prefix,
                                     train_steps=2))
    assert not (tmp_path / "run").exists()


def test_an_hf_folder_as_init_checkpoint_fits_or_is_one_line(tmp_path):
    """HF folders load by the same route as finetuning (init_checkpoint.py); another size is one
    line naming the tensors, before model_dir exists."""
    from funnel_tf.checkpoints.hf import read_hf_config

    hf = REPO / "tests" / "fixtures" / "hf" / "head_masked_lm_L8"
    assert hf.is_dir(), f"HF fixture {hf} is part of the repo"
    config = read_hf_config(str(hf))[1]
    assert check_init_checkpoint(str(hf), "mlm", config).startswith("hf checkpoint")
    with pytest.raises(checkpointing.CheckpointError) as info:
        check_init_checkpoint(str(hf), "mlm", config.replace(d_inner=64))
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 700, msg
    assert "shape mismatch (checkpoint vs model) (12)" in msg, msg
    assert "ffn/linear_1/bias: (37,) vs (64,)" in msg, msg
    with pytest.raises(checkpointing.CheckpointError, match="does not fit this model"):
        run_pretraining(PretrainArgs(model_dir=str(tmp_path / "run"), init_checkpoint=str(hf)))
    assert not (tmp_path / "run").exists()


def test_missing_init_checkpoint_is_refused_up_front(tmp_path):
    with pytest.raises(checkpointing.CheckpointError, match="not found"):
        run_pretraining(PretrainArgs(model_dir=str(tmp_path / "run"),
                                     init_checkpoint=str(tmp_path / "nope")))
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------- raw-text records
def _records(tmp_path, corpus):
    cfg = load_config("tiny").replace(vocab_size=919)
    data = inputs.build_pretraining_input([corpus], 32, 4, cfg, vocab=DEMO_VOCAB,
                                          data_format="text", work_dir=str(tmp_path / "work"))
    return data, inputs.read_manifest(data.files)


def test_records_follow_the_corpus_after_an_empty_first_try(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("")
    with pytest.raises(UserError, match="the corpus is empty"):
        _records(tmp_path, str(corpus))
    assert not (tmp_path / "work").exists()

    corpus.write_bytes(DEMO_CORPUS.read_bytes())  # fixed: records are made
    _, first = _records(tmp_path, str(corpus))
    assert first["num_examples"] > 0
    _, again = _records(tmp_path, str(corpus))     # unchanged: reused, not rewritten
    assert again["seconds"] == first["seconds"] and again["input_fingerprints"] == first["input_fingerprints"]

    half = DEMO_CORPUS.read_text().split("\n\n")
    corpus.write_text("\n\n".join(half[: len(half) // 2]))  # edited: rebuilt from the new text
    data, changed = _records(tmp_path, str(corpus))
    assert 0 < changed["num_examples"] < first["num_examples"]
    assert sorted(os.path.basename(f) for f in data.files) == [e["path"] for e in changed["files"]]


def test_init_weights_file_of_another_size_is_one_line_with_the_shapes(tmp_path, tiny_config):
    from funnel_tf.checkpoints.native import save_pretrained

    tiny = tiny_config.replace(vocab_size=919)
    other = pretraining_task("mlm", tiny.replace(d_inner=64))
    other.build()
    save_pretrained(other.backbone, str(tmp_path / "native"))
    with pytest.raises(checkpointing.CheckpointError) as info:
        check_init_checkpoint(str(tmp_path / "native"), "mlm", tiny)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 700, msg
    assert "24 of the model's" in msg and "[64, 64] x" in msg and "[64, 256] x" in msg, msg


def test_a_records_glob_may_match_the_manifest_and_a_stray_shard_is_refused(tmp_path, tiny_config):
    from funnel_tf.text.pretraining import create_pretraining_data

    out = tmp_path / "rec"
    create_pretraining_data([str(DEMO_CORPUS)], str(out), DEMO_VOCAB, seq_len=32, num_shards=2,
                            max_examples=8, progress=None)
    cfg = tiny_config.replace(vocab_size=919)
    data = inputs.build_pretraining_input([str(out / "*")], 32, 4, cfg)  # vocab from the manifest
    assert sorted(os.path.basename(f) for f in data.files) == [
        "pretrain-00000-of-00002.tfrecord", "pretrain-00001-of-00002.tfrecord"]
    (out / "pretrain-00000-of-00009.tfrecord").write_bytes(b"")  # left by an older run
    with pytest.raises(UserError, match=r"1 file\(s\) are not listed in its manifest.json"):
        inputs.build_pretraining_input([str(out / "*.tfrecord")], 32, 4, cfg)


def test_pretraining_from_scratch_uses_the_original_initialisation(tmp_path, tiny_config):
    from funnel_tf.config import FunnelConfig
    from funnel_tf.pretraining.args import PretrainArgs
    from funnel_tf.pretraining.run import check_same_config, resolve_config

    for name in ("tiny", "small", "large-base"):
        assert resolve_config(PretrainArgs(config=name)).init_scheme == "original"
    hf = resolve_config(PretrainArgs(config="small", init_scheme="hf"))
    assert hf.init_scheme == "hf"
    override = resolve_config(PretrainArgs(config="small", config_override=["init_scheme=hf"]))
    assert override.init_scheme == "hf"
    # a model_dir written before init_scheme existed resumes
    old = json.loads(tiny_config.to_json_string())
    old.pop("init_scheme")
    (tmp_path / "config.json").write_text(json.dumps(old))
    check_same_config(str(tmp_path), resolve_config(PretrainArgs(config="tiny")))
    with pytest.raises(Exception, match=r"fields \['d_model'\]"):
        check_same_config(str(tmp_path), tiny_config.replace(d_model=32))
    assert isinstance(FunnelConfig.from_dict(old), FunnelConfig)


# ------------------------------------------------------------------ corrupt records mid-run
@pytest.mark.slow
def test_a_record_corrupt_mid_file_stops_with_the_file_named(tmp_path):
    """Records without a manifest (another tool's), one shard truncated halfway: the first record
    reads fine, so the run starts; the DataLossError mid-training becomes one UserError naming
    the shard and the checkpoint to resume from, and the model_dir keeps what it had."""
    from funnel_tf.text.pretraining import MANIFEST_NAME, create_pretraining_data
    from funnel_tf.engine.loop import CorruptInputError

    out = tmp_path / "rec"
    create_pretraining_data([str(DEMO_CORPUS)], str(out), DEMO_VOCAB, seq_len=32, num_shards=2,
                            progress=None)
    (out / MANIFEST_NAME).unlink()
    bad = out / "pretrain-00001-of-00002.tfrecord"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    args = PretrainArgs(model_dir=str(tmp_path / "run"), train_data=[str(out / "*.tfrecord")],
                        vocab=DEMO_VOCAB, config="tiny", seq_len=32, batch_size=4,
                        train_steps=400, save_every=5, steps_per_loop=5, log_every=5)
    with pytest.raises(CorruptInputError) as info:
        run_pretraining(args)
    msg = one_line(info.value)
    assert msg.startswith(f"{bad}: corrupt or truncated record (truncated record at"), msg
    assert "training stopped within steps" in msg and "rerun" in msg, msg
    assert (tmp_path / "run" / "config.json").exists()
    saved = sorted((tmp_path / "run" / "checkpoints").glob("ckpt-*.index"))
    assert ("last checkpoint" in msg) == bool(saved), (msg, saved)


# ------------------------------------------------------------------------ run identity
MICRO = ["block_sizes=[1,1,1]", "d_model=32", "n_head=2", "d_head=16", "d_inner=64",
         "num_decoder_layers=1"]


def _tiny_run(tmp_path, **overrides):
    """A 2-step run of a micro model on 16 records of seq_len 32 (seq_len and vocab come from
    the records' manifest)."""
    from funnel_tf.text.pretraining import create_pretraining_data

    records = tmp_path / "rec"
    if not records.exists():
        create_pretraining_data([str(DEMO_CORPUS)], str(records), DEMO_VOCAB, seq_len=32,
                                num_shards=1, max_examples=16, progress=None)
    fields = dict(model_dir=str(tmp_path / "run"), train_data=[str(records / "*.tfrecord")],
                  config="tiny", config_override=MICRO, batch_size=4, train_steps=2,
                  steps_per_loop=1, log_every=1, save_every=1, warmup_steps=1, jit_compile="false")
    fields.update(overrides)
    return PretrainArgs(**fields)


def _listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_a_run_folder_from_before_run_json_is_compared_through_pretrain_args(tmp_path):
    """Issue 20: a resumed pretraining with another --seed / --learning_rate / --batch_size went
    on silently (loss 6.57 -> 16.78 in one case): pretrain_args.json was written, never compared.
    Here a folder as an older run left it (a checkpoint, pretrain_args.json, no run.json)."""
    import dataclasses

    from funnel_tf.pretraining.run import ARGS_FILE, fill_defaults
    from funnel_tf.engine.run_record import RunMismatchError

    run = tmp_path / "run"
    first, _ = fill_defaults(_tiny_run(tmp_path))
    tf.train.CheckpointManager(tf.train.Checkpoint(step=tf.Variable(2)),
                               str(run / "checkpoints"), max_to_keep=1).save()
    (run / ARGS_FILE).write_text(json.dumps(dataclasses.asdict(first)))
    before = _listing(run)
    with pytest.raises(RunMismatchError) as info:
        run_pretraining(_tiny_run(tmp_path, seed=1, learning_rate=1e-2, batch_size=8))
    assert one_line(info.value).endswith(
        "holds a pretraining run with other settings (pretrain_args.json): batch_size 4 -> 8; "
        "learning_rate 0.0001 -> 0.01; seed 0 -> 1; resume with the same settings or use a new "
        "--model_dir"), one_line(info.value)
    assert _listing(run) == before


@pytest.mark.slow  # a real 2-step run (~20 s on an idle 2-core CPU, over a minute under load)
def test_a_resume_with_other_defining_settings_is_refused_in_one_line(tmp_path, caplog):
    """Issue 20: run.json records what defines the run; a resume that differs is one line listing
    every difference, nothing written; what may change does, and is logged. The run's vocab is
    copied into model_dir (the pretrain -> finetune chain needs it)."""
    from funnel_tf.engine.run_record import RunMismatchError

    run_pretraining(_tiny_run(tmp_path))
    run = tmp_path / "run"
    record = json.loads((run / "run.json").read_text())
    assert record["kind"] == "pretraining" and record["defining"]["seed"] == 0
    assert (run / "vocab.txt").read_bytes() == pathlib.Path(DEMO_VOCAB).read_bytes()  # issue 20
    before = _listing(run)
    with pytest.raises(RunMismatchError) as info:
        run_pretraining(_tiny_run(tmp_path, seed=1, learning_rate=1e-2, batch_size=8))
    msg = one_line(info.value)
    assert "\n" not in str(info.value), msg
    for words in ("batch_size 4 -> 8", "learning_rate 0.0001 -> 0.01", "seed 0 -> 1"):
        assert words in msg, msg
    assert _listing(run) == before  # nothing written, nothing removed

    # What may change does, and the log says so (the run is complete: nothing is traced again).
    caplog.set_level("INFO")
    result = run_pretraining(_tiny_run(tmp_path, log_every=2, keep_checkpoints=3))
    assert result.step == 2
    assert "resuming with changed log_every 1 -> 2" in caplog.text
    assert "resuming with changed keep_checkpoints 5 -> 3" in caplog.text
    assert json.loads((run / "run.json").read_text())["changeable"]["log_every"] == 2


# ------------------------------------------------------------------ defaults scaled to the run
def test_a_short_run_gets_defaults_scaled_to_it_and_says_so(tmp_path):
    """Issue 20: --train_steps=100 kept 10,000 warmup steps (all warmup, no decay) and logged
    every 200 steps (nothing printed for minutes)."""
    from funnel_tf.pretraining.run import RUN_DEFAULTS, fill_defaults

    run = dict(train_data=[str(DEMO_CORPUS)], model_dir=str(tmp_path / "run"))
    a, notes = fill_defaults(PretrainArgs(train_steps=100, **run))
    assert (a.warmup_steps, a.steps_per_loop, a.log_every, a.save_every) == (10, 10, 10, 25)
    assert any(n.startswith("warmup_steps 10 (10% of train_steps; default 10000") for n in notes)
    assert any(n.startswith("log_every 10 (") for n in notes), notes
    # What the user chose stays; a long run keeps the defaults.
    a, notes = fill_defaults(PretrainArgs(train_steps=100, warmup_steps=50, log_every=7, **run))
    assert (a.warmup_steps, a.log_every, a.steps_per_loop) == (50, 7, 10)
    a, notes = fill_defaults(PretrainArgs(**run))
    assert (a.warmup_steps, a.log_every, a.save_every) == (RUN_DEFAULTS["warmup_steps"],
                                                          RUN_DEFAULTS["log_every"],
                                                          RUN_DEFAULTS["save_every"]) and not notes
    # A resumed run keeps its own warmup (a longer --train_steps may not change its schedule).
    saved = {"defining": {"warmup_steps": 10}}
    a, notes = fill_defaults(PretrainArgs(train_steps=200, **run), saved)
    assert a.warmup_steps == 10 and a.log_every == 20


def test_seq_len_comes_from_the_records_manifest(tmp_path):
    """Issue 20: records made with seq_len 32 needed --seq_len=32 (the default 512 was refused)."""
    from funnel_tf.text.pretraining import create_pretraining_data
    from funnel_tf.pretraining.run import fill_defaults

    out = tmp_path / "rec"
    create_pretraining_data([str(DEMO_CORPUS)], str(out), DEMO_VOCAB, seq_len=32, num_shards=1,
                            max_examples=8, progress=None)
    run = dict(train_data=[str(out / "*.tfrecord")], model_dir=str(tmp_path / "run"))
    a, notes = fill_defaults(PretrainArgs(**run))
    assert a.seq_len == 32 and "seq_len 32 (from the records' manifest.json)" in notes
    with pytest.raises(UserError, match="have seq_len 32, but --seq_len is 64"):
        run_pretraining(PretrainArgs(seq_len=64, config="tiny", batch_size=4, train_steps=2, **run))
    assert not (tmp_path / "run").exists()
