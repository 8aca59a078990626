"""What a multi-host (pod) run relies on, checked with real `--strategy=multi_worker` worker
processes on localhost (TF_CONFIG, free ports, one TMPDIR per worker):

- each worker's input pipeline reads a disjoint part of the data and together they read all of it;
- SIGTERM to one worker on a (simulated) GCP VM stops both at the same step with a checkpoint;
- only the chief writes into model_dir, and no worker leaves files behind anywhere else;
- `kill -9` of a worker mid-run, then restarting both, resumes from the last checkpoint and ends
  with the loss and weights of an uninterrupted run;
- finetune.py trains and evaluates with two workers, the chief alone writing the results.

A survivor whose peer died may hang in a collective: every wait has a timeout and every process is
SIGKILLed in `finally` (tests/multi_worker_util.py).
"""

import json
import os
import re


import numpy as np
import pytest
import tensorflow as tf

from tests.multi_worker_input_driver import example_key, first_epoch, unmasked_input
from tests.multi_worker_util import Cluster, python, wait_for, writes_under

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CORPUS = os.path.join(REPO, "data", "demo_corpus.txt")
DEMO_VOCAB = os.path.join(REPO, "data", "demo_vocab.txt")


def make_records(folder, num_shards: int) -> str:
    """Pretraining records of the shipped demo corpus (seq 64, ~126 examples); returns the glob."""
    from funnel_tf.text import pretraining

    pretraining.create_pretraining_data([DEMO_CORPUS], str(folder), DEMO_VOCAB, seq_len=64,
                                        num_shards=num_shards, seed=0, progress=None)
    return os.path.join(str(folder), "*.tfrecord")


def all_examples(pattern: str) -> list:
    """Every example key in the records, read directly (no sharding, no shuffling)."""
    from funnel_tf.text import pretraining_reader

    keys = []
    for f in sorted(tf.io.gfile.glob(pattern)):
        for rec in tf.data.TFRecordDataset(f):
            parsed = pretraining_reader.parse_pretraining_batch(tf.expand_dims(rec, 0), 64, 0)
            keys.append(example_key(parsed["input_ids"][0].numpy()))
    return keys


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return make_records(tmp_path_factory.mktemp("records"), num_shards=4)


# ---------------------------------------------------------------------------------- input shards
@pytest.mark.parametrize("num_shards", [1, 3, 4])
def test_worker_input_shards_are_disjoint_and_cover_the_data(tmp_path, num_shards, records):
    """With the InputContext MultiWorkerMirroredStrategy gives 2 one-replica workers, one epoch of
    each worker's input (the MLM task's `build_inputs`) is a disjoint part of the records and
    the parts cover every example: file sharding (>= 2 files) and example sharding (1 file) alike."""
    pattern = records if num_shards == 4 else make_records(tmp_path / "rec", num_shards)
    everything = all_examples(pattern)
    assert len(everything) > 100 and len(set(everything)) == len(everything)  # keys identify
    read = unmasked_input(pattern, DEMO_VOCAB)
    parts = [first_epoch(read(tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2))) for i in range(2)]
    assert all(parts) and not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(everything)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, records):
    """One real two-worker cluster (strategy from TF_CONFIG, TF believing it runs on a GCE VM) for
    two tests: each worker writes what its input pipeline reads, then trains the toy objective
    until SIGTERM to the non-chief alone stops both (tests/multi_worker_input_driver.py).
    Returns (input records, training results, model_dir) of the two workers."""
    root = tmp_path_factory.mktemp("two_workers")
    model_dir, out = root / "model", root / "out"
    out.mkdir()
    argv = python("-m", "tests.multi_worker_input_driver", records, DEMO_VOCAB, out, model_dir,
                  100_000)
    with Cluster(argv, root / "work") as cluster:
        results = _preempt(cluster, model_dir, out, signal_workers=[1])
    inputs = [json.loads((out / f"worker{i}.json").read_text()) for i in range(2)]
    return inputs, results, model_dir


def test_two_real_workers_read_disjoint_shards(two_workers, records):
    """Smoke test of the real thing: two worker processes, strategy from TF_CONFIG; each gets its
    own pipeline id, its distributed batches come from its own shard, the shards partition the
    data; worker 0 is the chief."""
    w = two_workers[0]
    assert [x["input_pipeline_id"] for x in w] == [0, 1]
    assert [x["is_chief"] for x in w] == [True, False]
    for x in w:
        assert (x["num_input_pipelines"], x["num_workers"], x["num_replicas"],
                x["per_replica_batch"]) == (2, 2, 2, 4)
        assert x["first_batch"] == x["epoch"][:4]  # what the strategy fed = the worker's shard
    assert not set(w[0]["epoch"]) & set(w[1]["epoch"])
    assert sorted(w[0]["epoch"] + w[1]["epoch"]) == sorted(all_examples(records))



# ---------------------------------------------------------------------------------- TF_CONFIG
def _tf_config(cluster=None, task=None):
    out = {}
    if cluster is not None:
        out["cluster"] = cluster
    if task is not None:
        out["task"] = task
    return json.dumps(out)


TWO = {"worker": ["localhost:2222", "localhost:2223"]}


@pytest.mark.parametrize("raw, message", [
    ('{"cluster": {"worker": ["localhost:2222"]', "TF_CONFIG is not valid JSON"),
    (_tf_config(task={"type": "worker", "index": 0}), 'TF_CONFIG has no "cluster"'),
    (_tf_config({"ps": ["localhost:1"]}, {"type": "ps", "index": 0}), 'no "worker" or "chief"'),
    (_tf_config({"worker": "localhost:2222"}, {"type": "worker", "index": 0}),
     "must be a non-empty list"),
    (_tf_config({"worker": ["localhost"]}, {"type": "worker", "index": 0}),
     "'localhost' is not a \"host:port\" address"),
    (_tf_config({"worker": ["h:1", "h:1"]}, {"type": "worker", "index": 0}), "lists 'h:1' twice"),
    (_tf_config(TWO), 'TF_CONFIG has no "task"'),
    (_tf_config(TWO, {"type": "wroker", "index": 0}), "task type 'wroker' is not a job"),
    (_tf_config(TWO, {"type": "worker", "index": 2}), "task index 2 is out of range"),
    (_tf_config(TWO, {"type": "worker", "index": -1}), "task index -1 is out of range"),
])
def test_malformed_tf_config_is_a_user_error(monkeypatch, raw, message):
    """A TF_CONFIG that cannot describe this worker fails up front with what is wrong (TF would
    fail obscurely, or wait forever for a peer that is not in the cluster)."""
    from funnel_tf.errors import UserError, one_line
    from funnel_tf.engine.strategy import StrategyError, make_strategy

    monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(StrategyError) as info:
        make_strategy("multi_worker")
    assert isinstance(info.value, UserError) and message in one_line(info.value)


def test_multi_worker_after_tensorflow_started_says_so(monkeypatch):
    """Creating the strategy after TF has run ops (a library bug, e.g. building a model first) is
    a RuntimeError that says what to do, not TF's bare 'Collective ops must be configured'."""
    from funnel_tf.engine.strategy import make_strategy

    tf.constant(1.0) + 1.0  # this process's runtime is up (as in any test)
    monkeypatch.setenv("TF_CONFIG", _tf_config(TWO, {"type": "worker", "index": 0}))
    with pytest.raises(RuntimeError, match="must run before TensorFlow executes anything"):
        make_strategy("multi_worker")


@pytest.mark.slow
def test_pretrain_with_a_bad_tf_config_is_one_line_and_writes_nothing(tmp_path, records):
    """The entry point: exit 2, one `pretrain.py: error:` line naming TF_CONFIG, no model_dir."""
    import subprocess

    env = dict(os.environ, TF_CONFIG=_tf_config(TWO, {"type": "worker", "index": 5}),
               TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=REPO)
    model_dir = tmp_path / "model"
    proc = subprocess.run(python("pretrain.py", f"--train_data={records}",
                                 f"--model_dir={model_dir}", "--strategy=multi_worker",
                                 "--config=tiny", "--seq_len=64", "--batch_size=8"),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("pretrain.py:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert errors == ["pretrain.py: error: TF_CONFIG task index 5 is out of range for job "
                      "'worker' with 2 address(es): use 0..1"], proc.stderr[-3000:]
    assert not model_dir.exists()

# ---------------------------------------------------------------------------------- pretraining
TRAIN_STEPS, SAVE_EVERY = 8, 2
# What the chief may write into model_dir besides checkpoints/ and train/ (the entry point's
# record of the run; names differ between versions of pretrain.py).
CHIEF_METADATA = {"config.json", "metrics.jsonl", "pretrain_flags.txt", "pretrain_args.json",
                  "generator_config.json"}


@pytest.fixture(scope="module")
def micro_config(tmp_path_factory):
    """A very small funnel on the demo vocab (2 blocks of 1 layer, d_model 32) as a config file,
    without dropout (fewer random streams to keep in step across a restart)."""
    return write_micro_config(tmp_path_factory.mktemp("config") / "micro.json", dropout=0.0)


def write_micro_config(path, dropout: float) -> str:
    from funnel_tf.config import load_config

    load_config("tiny").replace(vocab_size=919, block_sizes=[1, 1], block_repeats=[1, 1],
                                d_model=32, n_head=2, d_head=16, d_inner=64, num_decoder_layers=1,
                                hidden_dropout=dropout, attention_dropout=dropout).save(str(path))
    return str(path)


def pretrain_argv(model_dir, records, config, steps=TRAIN_STEPS):
    return python("pretrain.py", f"--config={config}", f"--train_data={records}",
                  f"--model_dir={model_dir}", "--strategy=multi_worker",
                  f"--train_steps={steps}", f"--save_every={SAVE_EVERY}", "--batch_size=8",
                  "--seq_len=64", "--steps_per_loop=1", "--log_every=1", "--jit_compile=false",
                  "--learning_rate=1e-3", "--warmup_steps=2", "--seed=0")


def losses(model_dir) -> dict:
    """{step: loss} from metrics.jsonl (a resumed run appends; the last record of a step wins)."""
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


def final_state(model_dir) -> dict:
    """Weights, optimizer slots and iterations, dropout seed states and the step of the newest
    checkpoint in model_dir/checkpoints, by checkpoint key (not save_counter and TF's preemption
    run counter, which count saves and host calls)."""
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    dtypes = reader.get_variable_to_dtype_map()
    return {k: reader.get_tensor(k) for k in dtypes
            if dtypes[k].is_floating or k.startswith(("step/", "state/", "optimizer/_iterations"))}


def files_under(folder) -> list:
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, names in os.walk(folder) for f in names)


def checkpoint_saved(model_dir, step: int):
    """True once the chief has finished checkpoint `step` (its state file points at it)."""
    state = os.path.join(model_dir, "checkpoints", "checkpoint")

    def done():
        try:
            with open(state) as f:
                return f"ckpt-{step}\"" in f.read().splitlines()[0]
        except (OSError, IndexError):
            return False
    return done


def uninterrupted_run(root, records, config, steps=TRAIN_STEPS, trace=()):
    """A complete two-worker pretraining run in root/model; returns the finished Cluster."""
    with Cluster(pretrain_argv(str(root / "model"), records, config, steps=steps), root / "work",
                 trace=trace) as cluster:
        cluster.wait(timeout=400)
    return cluster


@pytest.mark.slow
def test_pretrain_two_workers_only_the_chief_writes(tmp_path, records, micro_config):
    """Both workers train in lockstep to the same loss; the non-chief (traced with strace) creates,
    changes or removes nothing under model_dir; model_dir holds exactly what the chief writes (its
    TensorBoard file carries its pid); neither worker leaves anything in its TMPDIR (the
    non-chief's scratch checkpoints included)."""
    cluster = uninterrupted_run(tmp_path, records, micro_config, trace=[1])
    model_dir = str(tmp_path / "model")
    assert writes_under(cluster.traces[1], model_dir) == []
    finals = []
    for log in cluster.logs:
        text = open(log, errors="replace").read()
        found = re.findall(rf"finished at step {TRAIN_STEPS}: loss ([0-9.]+)", text)
        assert found, text[-2000:]
        finals.append(found[-1])
    assert finals[0] == finals[1]
    assert sorted(losses(model_dir)) == list(range(1, TRAIN_STEPS + 1))
    kept = list(range(SAVE_EVERY, TRAIN_STEPS + 1, SAVE_EVERY))[-5:]  # --keep_checkpoints 5
    checkpoints = ["checkpoints/checkpoint"] + [
        f"checkpoints/ckpt-{s}.{ext}" for s in kept for ext in ("data-00000-of-00001", "index")]
    found = files_under(model_dir)
    events = [f for f in found if f.startswith("train/events.out.tfevents.")]
    assert len(events) == 1 and events[0].split(".")[-3] == str(cluster.procs[0].pid), found
    extra = [f for f in found if f not in checkpoints and f not in events
             and f not in CHIEF_METADATA]
    assert extra == [] and set(checkpoints) <= set(found), found
    assert {"config.json", "metrics.jsonl"} <= set(found), found
    for tmp in cluster.tmpdirs:
        assert files_under(tmp) == [] and os.listdir(tmp) == [], (tmp, files_under(tmp))


@pytest.mark.slow
def test_pretrain_kill9_of_a_worker_then_restart_resumes_to_the_same_result(
        tmp_path, records, micro_config):
    """SIGKILL the non-chief right after checkpoint 2; the chief, left waiting in a collective, is
    given a bounded time to fail and is then killed too. Restarting both workers resumes from the
    newest checkpoint and ends at the same step, losses and weights as an uninterrupted run
    (restored weights, optimizer state, schedule and replayed input position). Two identical
    two-worker runs are bitwise reproducible, so the comparison is at float32 round-off."""
    uninterrupted_run(tmp_path / "reference", records, micro_config)
    reference = str(tmp_path / "reference" / "model")
    model_dir = str(tmp_path / "model")
    argv = pretrain_argv(model_dir, records, micro_config)
    with Cluster(argv, tmp_path / "first") as cluster:
        wait_for(checkpoint_saved(model_dir, SAVE_EVERY), timeout=400, procs=cluster.procs,
                 what=f"checkpoint {SAVE_EVERY}")
        cluster.kill(1)
        try:  # the survivor either fails on its own or hangs in a collective: bounded either way
            cluster.procs[0].wait(timeout=60)
        except Exception:
            cluster.kill(0)
    first = losses(model_dir)
    assert max(first) < TRAIN_STEPS, "the run ended before the kill"
    resumed_from = int(re.search(r"ckpt-(\d+)", open(
        os.path.join(model_dir, "checkpoints", "checkpoint")).readline()).group(1))
    assert SAVE_EVERY <= resumed_from < TRAIN_STEPS
    with Cluster(argv, tmp_path / "second") as cluster:
        cluster.wait(timeout=400)
    log = open(cluster.logs[0], errors="replace").read()
    assert f"restored {model_dir}/checkpoints/ckpt-{resumed_from}" in log, log[-3000:]
    full, resumed = losses(reference), losses(model_dir)
    assert sorted(resumed) == list(range(1, TRAIN_STEPS + 1))
    steps = list(range(resumed_from + 1, TRAIN_STEPS + 1))
    np.testing.assert_allclose([resumed[s] for s in steps], [full[s] for s in steps], rtol=1e-6)
    want, got = final_state(reference), final_state(model_dir)
    assert sorted(got) == sorted(want) and len(want) > 100
    assert int(got["step/.ATTRIBUTES/VARIABLE_VALUE"]) == TRAIN_STEPS
    for name in want:
        if want[name].dtype.kind in "iu":  # step, optimizer iterations: exact
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7, err_msg=name)


# ---------------------------------------------------------------------------------- finetuning
def write_polarity_task(folder) -> dict:
    """train/dev TSVs (`sentence<TAB>label`) of generated good/bad sentences on the demo vocab."""
    rng = np.random.RandomState(0)
    subjects = ("the evening", "the river", "the garden", "the harbor", "the room", "the street")
    good, bad = ("bright", "warm", "calm", "happy"), ("cold", "dark", "broken", "tired")
    paths = {}
    for split, n in (("train", 64), ("dev", 24)):
        paths[split] = os.path.join(str(folder), f"{split}.tsv")
        with open(paths[split], "w") as f:
            f.write("sentence\tlabel\n")
            for _ in range(n):
                label = int(rng.randint(2))
                word = rng.choice(good if label else bad)
                f.write(f"{rng.choice(subjects)} was {word}.\t{('neg', 'pos')[label]}\n")
    return paths


@pytest.mark.slow
def test_finetune_two_workers_trains_and_only_the_chief_writes(tmp_path, micro_config):
    """finetune.py with --strategy=multi_worker: both workers finish the same number of steps,
    the chief writes the eval results, the non-chief (traced) writes nothing under model_dir and
    neither leaves files in its TMPDIR."""
    os.makedirs(tmp_path / "task")
    files = write_polarity_task(tmp_path / "task")
    model_dir = str(tmp_path / "model")
    argv = python("finetune.py", "--task=csv", f"--train_file={files['train']}",
                  f"--dev_file={files['dev']}", "--text_a_column=sentence", "--label_column=label",
                  f"--config={micro_config}", f"--vocab_file={DEMO_VOCAB}",
                  f"--model_dir={model_dir}", "--do_train", "--do_eval", "--batch_size=8",
                  "--train_steps=6", "--eval_every=3", "--max_seq_length=32", "--log_every=3",
                  "--steps_per_loop=3", "--strategy=multi_worker", "--seed=0")
    with Cluster(argv, tmp_path / "work", trace=[1]) as cluster:
        cluster.wait(timeout=500)
    records = [json.loads(line) for line in open(os.path.join(model_dir, "eval_results.jsonl"))]
    assert [r["step"] for r in records] == [3, 6], records
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in records), records
    for i in range(2):
        assert "step 6/6" in cluster.tail(i, 200_000), cluster.tail(i)
    assert writes_under(cluster.traces[1], model_dir) == []
    events = [f for f in files_under(model_dir) if "events.out.tfevents." in f]
    assert events and all(f.split(".")[-3] == str(cluster.procs[0].pid) for f in events), events
    for tmp in cluster.tmpdirs:
        assert files_under(tmp) == [], (tmp, files_under(tmp))


# ---------------------------------------------------------------------------------- preemption
def _first_progress(model_dir):
    """True once the chief has logged a progress record (training is under way)."""
    path = os.path.join(str(model_dir), "metrics.jsonl")
    return lambda: os.path.exists(path) and os.path.getsize(path) > 0


def _preempt(cluster, model_dir, out_dir, signal_workers, timeout=120):
    """SIGTERM `signal_workers` once training runs; every worker must exit 75 within `timeout`
    (the old code trained on: the wait fails). Returns the workers' results (out_dir/result<i>.json)."""
    import signal
    import subprocess

    wait_for(_first_progress(model_dir), timeout=300, procs=cluster.procs, what="training")
    for i in signal_workers:
        cluster.procs[i].send_signal(signal.SIGTERM)
    codes = []
    for i, p in enumerate(cluster.procs):
        try:
            codes.append(p.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker {i} still training {timeout}s after SIGTERM; logs:\n"
                                 + cluster.all_tails()) from None
    assert codes == [75] * len(codes), (codes, cluster.all_tails())
    return [json.loads((out_dir / f"result{i}.json").read_text()) for i in range(len(codes))]


def _newest_checkpoint_step(model_dir) -> int:
    with open(os.path.join(str(model_dir), "checkpoints", "checkpoint")) as f:
        return int(re.search(r"ckpt-(\d+)", f.readline()).group(1))


def test_sigterm_to_one_worker_on_gcp_stops_both_at_the_same_step_and_saves(two_workers):
    """Two real workers in which TF believes it runs on a GCE VM (where TF's preemption handler
    does nothing, as on a Cloud TPU VM): SIGTERM to the non-chief alone. Both workers agree on the
    stop at the next host-call boundary, stop at the same step, the chief writes the checkpoint
    of that step and both exit 75 (the old code ignored the signal and trained on)."""
    _, results, model_dir = two_workers
    steps = {r["step"] for r in results}
    assert len(steps) == 1 and all(r["preempted"] for r in results), results
    step = steps.pop()
    assert 0 < step < 100_000
    assert _newest_checkpoint_step(model_dir) == step
    assert os.path.exists(model_dir / "checkpoints" / f"ckpt-{step}.index")


@pytest.mark.slow
def test_pretrain_sigterm_to_both_workers_on_gcp_saves_exits_75_and_resumes(
        tmp_path, records, micro_config):
    """pretrain.py with two workers on a (simulated) GCE VM: SIGTERM to both mid-run gives a
    checkpoint at the step reached and exit 75 on both; rerunning resumes from that checkpoint."""
    import signal
    import subprocess

    model_dir = str(tmp_path / "model")

    def argv(steps):
        return python("-m", "tests.engine.on_gcp", *pretrain_argv(model_dir, records,
                                                                     micro_config, steps)[1:])
    with Cluster(argv(100_000), tmp_path / "first") as cluster:
        wait_for(_first_progress(model_dir), timeout=400, procs=cluster.procs, what="training")
        for p in cluster.procs:
            p.send_signal(signal.SIGTERM)
        try:
            codes = [p.wait(timeout=120) for p in cluster.procs]
        except subprocess.TimeoutExpired:
            raise AssertionError("still training after SIGTERM:\n" + cluster.all_tails()) from None
    assert codes == [75, 75], cluster.all_tails()
    stopped = [int(re.findall(r"stopped \(preempted\) at step (\d+)", cluster.tail(i, 200_000))[-1])
               for i in range(2)]
    step = stopped[0]
    assert stopped == [step, step] and 0 < step < 100_000
    assert _newest_checkpoint_step(model_dir) == step
    with Cluster(argv(step + 2), tmp_path / "second") as cluster:
        cluster.wait(timeout=400)
    log = cluster.tail(0, 200_000)
    assert f"restored {model_dir}/checkpoints/ckpt-{step}" in log, log[-3000:]
    assert f"finished at step {step + 2}" in log, log[-3000:]
