"""The installed package works outside the checkout: setup.py ships configs/ and the demo data and
points every console script at a real function (fast), and .ci/wheel_check.sh builds the wheel,
installs it into a fresh venv and runs the README quickstart there (slow)."""

import fnmatch
import importlib
import os
import pathlib
import runpy
import subprocess
import sys

import pytest
import setuptools

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = {"funnel-pretrain", "funnel-finetune", "funnel-convert", "funnel-text"}


@pytest.fixture(scope="module")
def setup_kwargs():
    """setup.py's arguments, captured without building anything."""
    captured = {}
    saved = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = saved
        os.chdir(cwd)
    return captured


def test_package_data_covers_configs_and_demo_data(setup_kwargs):
    package_dir, package_data = setup_kwargs["package_dir"], setup_kwargs["package_data"]
    assert {"funnel_tf.configs", "funnel_tf.demo_data"} <= set(setup_kwargs["packages"])
    for package, folder in (("funnel_tf.configs", "configs"), ("funnel_tf.demo_data", "data")):
        assert package_dir[package] == folder
        shipped = [f for f in os.listdir(REPO / folder)
                   if any(fnmatch.fnmatch(f, p) for p in package_data[package])]
        assert sorted(shipped) == sorted(os.listdir(REPO / folder)), f"{folder}/ files left out of the wheel"
    assert "demo_corpus.txt" in os.listdir(REPO / "data") and "small.json" in os.listdir(REPO / "configs")


def test_console_scripts_point_at_functions(setup_kwargs):
    scripts = dict(s.split("=", 1) for s in setup_kwargs["entry_points"]["console_scripts"])
    assert SCRIPTS <= set(scripts)
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name
    # The TensorFlow split into extras stays: the core requirements never pull a TF wheel.
    assert not any(r.startswith("tensorflow") and "datasets" not in r for r in setup_kwargs["install_requires"])
    assert {"cpu", "test", "tpu"} <= set(setup_kwargs["extras_require"])


def test_funnel_text_console_script_runs_the_text_cli(monkeypatch, capsys):
    from funnel_tf import entry_points

    monkeypatch.setattr(sys, "argv", ["funnel-text", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        entry_points.text()
    assert exit_info.value.code == 0
    assert "COMMAND" in capsys.readouterr().out  # build-vocab / create-pretraining-data


@pytest.mark.slow
def test_wheel_installs_and_runs_the_quickstart_outside_the_checkout():
    run = subprocess.run(["bash", str(REPO / ".ci" / "wheel_check.sh")], capture_output=True, text=True,
                         timeout=1500, env=dict(os.environ, PYTHON=sys.executable))
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert "wheel_check: OK" in run.stdout
    assert "quickstart ok" in run.stdout
