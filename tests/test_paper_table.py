"""bench/paper_table.py: plan checks, resume after an interruption, LR choice, rendering.

The fast tests replace the two expensive calls (the pretrain.py subprocess and one finetuning run)
with fakes that write what the real ones write; the slow test runs the real toy pipeline.
"""

import importlib.util
import json
import os
import shutil
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_VOCAB = os.path.join(REPO, "data", "demo_vocab.txt")
DEMO_CORPUS = os.path.join(REPO, "data", "demo_corpus.txt")


def _load_bench():
    spec = importlib.util.spec_from_file_location(
        "paper_table", os.path.join(REPO, "bench", "paper_table.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["paper_table"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


pt = _load_bench()
# Toy sizes whose training FLOPs per token match within 5%: B1-1-1 + 2 decoder layers vs L4.
TOY = ["--d_model=32", "--n_head=2", "--d_head=16", "--d_inner=64", "--funnel_blocks=1,1,1",
       "--baseline_layers=4", "--seq_len=32", "--batch_size=4", "--pretrain_steps=4",
       "--warmup_steps=1", "--save_every=2", "--precision=float32", "--finetune_precision=float32",
       "--tasks=sst-2", "--seeds=0,1", "--lrs=1e-4,3e-4"]


def _flag(cmd, name):
    return next(c.split("=", 1)[1] for c in cmd if c.startswith(f"--{name}="))


class FakePretrain:
    """Writes metrics.jsonl as pretrain.py does (a loss every --log_every steps)."""

    def __init__(self):
        self.calls = []

    def __call__(self, cmd, log_path):
        self.calls.append(_flag(cmd, "model_dir"))
        model_dir, steps = _flag(cmd, "model_dir"), int(_flag(cmd, "train_steps"))
        os.makedirs(model_dir, exist_ok=True)
        with open(os.path.join(model_dir, "metrics.jsonl"), "w") as f:
            for step in range(2, steps + 1, 2):
                f.write(json.dumps({"step": step, "loss": 10.0 / step, "elapsed_sec": step}) + "\n")
        return 0


class FakeFinetune:
    """Scores: the funnel wins at lr 3e-4, the others at 1e-4; `fail_at` simulates a kill."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def __call__(self, args):
        model = args.model_dir.split(os.sep)[-3]
        lr, seed = args.hparams["learning_rate"], args.run["seed"]
        self.calls.append((model, lr, seed))
        if len(self.calls) == self.fail_at:
            raise KeyboardInterrupt("killed")
        good = 3e-4 if model == "funnel" else 1e-4
        value = 0.8 + (0.1 if lr == good else 0.0) + 0.01 * seed
        return {"metric": "accuracy", "value": value, "metrics": {"accuracy": value}, "steps": 3}


@pytest.fixture
def env(tmp_path):
    glue = tmp_path / "glue"
    glue.mkdir()
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nother text\n\n## GPU (someone else's section)\nkeep me\n")
    argv = TOY + [f"--work_dir={tmp_path / 'work'}", f"--results={tmp_path / 'results.json'}",
                  f"--readme={readme}", f"--vocab={DEMO_VOCAB}", f"--glue_dir={glue}",
                  f"--corpus={DEMO_CORPUS}"]
    return tmp_path, argv


def test_stage_one_then_resume_after_a_kill_skips_finished_work(env):
    tmp, argv = env
    with open(pt.README, encoding="utf-8") as f:
        bench_readme = f.read()
    results_path = tmp / "results.json"
    pre = FakePretrain()
    assert pt.run(argv + ["--stages=pretrain"], pretrain_runner=pre, finetuner=FakeFinetune()) == 0
    assert len(pre.calls) == 2
    runs = json.loads(results_path.read_text())["runs"]
    by_model = {r["model"]: r for r in runs if r["kind"] == "pretrain"}
    assert set(by_model) == {"funnel", "baseline"}
    f, b = by_model["funnel"], by_model["baseline"]
    assert f["tokens"] == b["tokens"] == 4 * 4 * 32
    assert abs(f["flops"] / b["flops"] - 1) < 0.05 and f["final_mlm_loss"] == pytest.approx(2.5)
    assert f["curve"] == [[2, 5.0], [4, 2.5]]
    # the corpus copy is UTF-8 with one document per file
    assert os.listdir(tmp / "work" / "corpus")

    # stage 2, killed at the third finetuning run
    fine = FakeFinetune(fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        pt.run(argv, pretrain_runner=pre, finetuner=fine)
    assert len(pre.calls) == 2  # pretraining was not repeated
    done = [r for r in json.loads(results_path.read_text())["runs"] if r["kind"] == "finetune"]
    assert len(done) == 2

    # rerun: only the missing runs, the funnel's seed 1 at its winning rate
    fine2 = FakeFinetune()
    assert pt.run(argv, pretrain_runner=pre, finetuner=fine2) == 0
    assert len(pre.calls) == 2
    assert fine2.calls[0] == ("funnel", 3e-4, 1) and ("funnel", 1e-4, 0) not in fine2.calls
    runs = json.loads(results_path.read_text())["runs"]
    fine_runs = [r for r in runs if r["kind"] == "finetune"]
    assert len(fine_runs) == 3 * 3  # 3 models x (2 rates at seed 0 + 1 more seed)
    keys = {(r["model"], r["lr"], r["seed"]) for r in fine_runs}
    assert ("baseline", 1e-4, 1) in keys and ("baseline", 3e-4, 1) not in keys
    scratch = next(r for r in fine_runs if r["model"] == "funnel_scratch")
    assert scratch["pretrain_flops"] == 0.0 and scratch["final_mlm_loss"] is None
    funnel_run = next(r for r in fine_runs if r["model"] == "funnel")
    assert funnel_run["final_mlm_loss"] == pytest.approx(2.5) and funnel_run["pretrain_flops"] > 0

    # a third run does nothing new
    fine3 = FakeFinetune()
    pt.run(argv, pretrain_runner=pre, finetuner=fine3)
    assert fine3.calls == [] and len(pre.calls) == 2

    readme = (tmp / "README.md").read_text()
    assert readme.count(pt.SECTION_START) == 1 and "keep me" in readme and "other text" in readme
    row = next(line for line in readme.splitlines() if line.startswith("| funnel |"))
    assert "90.5 (90.0–91.0) [n=2]" in row and "2.500" in row  # median (min–max) x100, MLM loss
    assert "| baseline |" in readme and "| funnel_scratch |" in readme
    with open(pt.README, encoding="utf-8") as f:
        assert f.read() == bench_readme  # only --readme is written


def test_partial_results_render_a_partial_table(tmp_path):
    results = {"runs": [{"kind": "finetune", "model": "baseline", "task": "rte", "lr": 1e-4,
                         "seed": 0, "metric": "accuracy", "value": 0.6}]}
    path = tmp_path / "paper_table_x.json"
    path.write_text(json.dumps(results))
    readme = tmp_path / "README.md"
    section = pt.render(str(path), str(readme))
    assert "| baseline | 60.0 [n=1] |" in section and "funnel_scratch" not in section
    assert pt.render(str(path), str(readme)) == section
    assert readme.read_text().count(pt.SECTION_END) == 1


def test_a_different_plan_in_the_same_work_dir_is_refused(env, capsys):
    tmp, argv = env
    pt.run(argv + ["--stages=pretrain"], pretrain_runner=FakePretrain(), finetuner=FakeFinetune())
    assert pt.main(argv + ["--pretrain_steps=8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"paper_table: error: {tmp / 'work' / 'plan.json'} holds a different plan "
                   "(fields ['pretrain_steps']); rerun with the same flags to resume, or use a new "
                   "--work_dir"]


def test_unmatched_flops_are_refused_before_anything_is_written(env, capsys):
    tmp, argv = env
    assert pt.main(argv + ["--baseline_layers=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paper_table: error: training FLOPs per token differ by")
    assert not (tmp / "work").exists() and not (tmp / "results.json").exists()


@pytest.mark.parametrize("flag, message", [
    ("--funnel_blocks=4,x", "--funnel_blocks='4,x': expected a comma-separated list of int"),
    ("--lrs=", "--lrs='': empty"),
    ("--pretrain_steps=0", "--pretrain_steps=0: must be >= 1"),
    ("--tasks=mnli", "no recipe for task(s) ['mnli']"),
    ("--seq_len=4", "sequence length 4 is too short for 3 blocks"),
    ("--stages=foo", "--stages 'foo': use pretrain, finetune or pretrain,finetune"),
])
def test_bad_flags_are_one_line_errors_before_anything_is_written(env, capsys, flag, message):
    tmp, argv = env
    assert pt.main(argv + [flag]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("paper_table: error: ") and message in err[0]
    assert not (tmp / "work").exists() and not (tmp / "results.json").exists()


def test_a_bad_recipe_fails_up_front(env, tmp_path, capsys):
    tmp, argv = env
    recipes = tmp_path / "r.json"
    recipes.write_text(json.dumps({"sst-2": {"epoch": 1}}))
    assert pt.main(argv + [f"--recipes={recipes}"]) == 2
    assert "recipe of sst-2:" in capsys.readouterr().err
    assert not (tmp / "work").exists()


def test_param_count_matches_the_model():
    from funnel_tf.modeling.heads import FunnelForMaskedLM

    plan = pt.Plan(results="r", vocab="v", glue_dir="g", corpus=[], d_model=32, n_head=2,
                   d_head=16, d_inner=64, funnel_blocks=[1, 1, 1], baseline_layers=4)
    for config in pt.model_configs(plan).values():
        config = config.replace(vocab_size=100)
        model = FunnelForMaskedLM(config)
        assert pt._param_count(config) == sum(int(v.numpy().size) for v in model.weights)


@pytest.mark.slow
def test_real_toy_pipeline(tmp_path):
    """pretrain.py for real (4 steps each) and run_finetuning on a 40-row SST-2, 1 seed, 1 rate."""
    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    rows = ["sentence\tlabel"] + [f"{'a good film' if i % 2 else 'a dull film'} number {i}\t{i % 2}"
                                  for i in range(40)]
    (glue / "train.tsv").write_text("\n".join(rows) + "\n")
    (glue / "dev.tsv").write_text("\n".join(rows[:17]) + "\n")
    recipes = tmp_path / "recipes.json"
    recipes.write_text(json.dumps({"sst-2": {"max_train_examples": 16, "epochs": 1.0,
                                             "max_seq_length": 32, "batch_size": 8}}))
    argv = [a for a in TOY if not a.startswith(("--seeds", "--lrs"))] + [
        "--seeds=0", "--lrs=1e-4", f"--recipes={recipes}", f"--work_dir={tmp_path / 'work'}",
        f"--results={tmp_path / 'paper_table_t.json'}", f"--readme={tmp_path / 'README.md'}",
        f"--vocab={DEMO_VOCAB}", f"--glue_dir={tmp_path / 'glue'}", f"--corpus={DEMO_CORPUS}"]
    assert pt.main(argv) == 0
    runs = json.loads((tmp_path / "paper_table_t.json").read_text())["runs"]
    assert {r["model"] for r in runs if r["kind"] == "pretrain"} == {"funnel", "baseline"}
    fine = [r for r in runs if r["kind"] == "finetune"]
    assert len(fine) == 3 and all(0.0 <= r["value"] <= 1.0 for r in fine)
    # The probe of the pretrained checkpoints (bench/paper_table_probe.py) runs on the same dir.
    spec = importlib.util.spec_from_file_location(
        "paper_table_probe", os.path.join(REPO, "bench", "paper_table_probe.py"))
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    out = tmp_path / "probe.json"
    assert probe.main([f"--work_dir={tmp_path / 'work'}", f"--out={out}", f"--vocab={DEMO_VOCAB}",
                       f"--glue_dir={tmp_path / 'glue'}"]) == 0
    found = json.loads(out.read_text())
    assert [(c["model"], c["init"]) for c in found["cls"]] == [
        ("funnel", "pretrained"), ("funnel", "random"), ("baseline", "pretrained"),
        ("baseline", "random")]
    assert all(-1.0 <= c["mean_pairwise_cosine"] <= 1.0 + 1e-6 for c in found["cls"])
    bypass = found["funnel_mlm_without_pooled_blocks"]
    assert bypass["full"]["mlm_loss"] > 0 and bypass["pooled_blocks_zeroed"]["mlm_loss"] > 0
    assert bypass["full"]["mlm_loss"] != bypass["pooled_blocks_zeroed"]["mlm_loss"]
    shutil.rmtree(tmp_path / "work" / "pretrain")  # a rerun must not need them
    assert pt.main(argv) == 0
