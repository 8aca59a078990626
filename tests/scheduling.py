"""How the default suite spreads over the machine's cores (a plugin of tests/conftest.py).

pytest.ini runs `-n auto --dist loadscope`: pytest-xdist hands out whole test modules, so a
module-scoped fixture (a finished run, built models, a subprocess's verdict) is built once, not
once per worker that happens to get one of its tests. The heaviest modules go first, so no worker
is left with a long module at the end while the other idles (longest-first scheduling). xdist's own
loadscope order (most tests first, its default since 3.5) would hand out a 1-test module of 40 s last.
"""

import os
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent

# Modules of the default suite that take the most CPU time, heaviest first (CPU seconds per module
# measured with tests' own rusage on 2026-12-07, 20:44 UTC; refresh when a module grows past the
# last here).
HEAVY_FIRST = (
    "engine/test_loop.py",
    "tasks/test_preemption.py",
    "test_finetune.py",
    "tasks/test_feature_records.py",
    "modeling/test_parity_hf.py",
    "test_model_contract.py",
    "modeling/test_model.py",
    "finetuning/test_runner.py",
    "test_classifier_preprocessor.py",
    "modeling/test_fusion.py",
    "test_load_pretraining_run.py",
    "modeling/test_initializers.py",
    "test_classifier.py",
    "test_multi_worker.py",
    "test_export.py",
    "test_classifier_nonfinite.py",
    "text/test_pretraining.py",
    "engine/test_two_strategies.py",
    "checkpoints/test_native.py",
    "text/test_glue.py",
    "tasks/test_run_identity.py",
    "checkpoints/test_convert.py",
    "text/test_squad.py",
    "text/test_masking.py",
    "tasks/test_inputs.py",
    "text/test_classification.py",
    "modeling/test_dropout_replicas.py",
    "pretraining/test_run.py",
    "checkpoints/test_original.py",
    "text/test_wordpiece.py",
    "modeling/test_dtype_from_pretrained.py",
    "test_api.py",
    "test_logs.py",
)


def pytest_configure(config):
    """Hand out modules in collection order (ours, below) rather than xdist's most-tests-first
    (xdist >= 3.8; setup.py's test extra asks for it, an older xdist keeps its own order)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def pytest_xdist_auto_num_workers(config):
    """`-n auto` spreads the whole default suite over this machine's cores (CI's 2-core runner: 2
    workers); a run that names files or folders stays in one process, where starting workers
    (TensorFlow imported again in each) would cost more than it saves."""
    named = [str(a).split("::")[0] for a in config.invocation_params.args
             if not str(a).startswith("-") and pathlib.Path(str(a).split("::")[0]).exists()]
    if any(pathlib.Path(a).resolve() != TESTS for a in named):
        return 0
    return max(1, min(usable_cores(), 8))


def pytest_collection_modifyitems(config, items):
    """Heaviest modules first; every module's tests stay together and in their own order."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}

    def key(item):
        try:
            rel = pathlib.Path(str(item.fspath)).resolve().relative_to(TESTS).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(rel, len(rank))

    items.sort(key=key)  # stable: the rest keep collection order
