"""funnel-tf: Funnel-Transformer in TensorFlow 2 / Keras 3, built for TPU training."""

from setuptools import find_packages, setup

# The standard TensorFlow wheel. TF 2.19/2.20 are the last TPU builds; CI pins 2.21 through .ci/run.
# tensorflow-text must match TF's minor version (2.21.0 fails on import; use 2.21.1).
STANDARD_TF = ["tensorflow>=2.19,<2.22", "tensorflow-text>=2.19,<2.22,!=2.21.0"]
TEST = ["pytest", "pytest-timeout", "pytest-xdist>=3.8", "scipy"]  # scipy: the metric tests' reference values;
# pytest-xdist: the default suite runs on every core (pytest.ini: -n auto); 3.8 lets tests/scheduling.py keep
# the heaviest modules first (--no-loadscope-reorder)
# The JAX backend (KERAS_BACKEND=jax): the models and our / Keras / HF checkpoints, without TensorFlow.
# CPU jaxlib here; TPU VMs add `jax[tpu]`, CUDA GPUs `jax[cuda12]` (README: "On JAX"). Keras 3 comes
# with TensorFlow otherwise, so it is named here; 3.10+ has the keras.ops the models use. Orbax writes
# the JAX engine's checkpoints (async; gs:// through tensorstore); 0.11-0.12 resolve with jax 0.10.
JAX = ["jax[cpu]>=0.5,<0.11", "keras>=3.10,<4", "orbax-checkpoint>=0.11,<0.13"]

setup(
    name="funnel-tf",
    version="0.1.0",
    description="Funnel-Transformer (Dai et al. 2020) in TF2/Keras 3 for TPU/GPU/CPU training",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # The repo's configs/ and data/ (demo corpus + vocab) ship inside the package as
    # funnel_tf/configs and funnel_tf/demo_data; funnel_tf.resources finds them in both layouts.
    packages=find_packages(include=["funnel_tf", "funnel_tf.*"]) + ["funnel_tf.configs", "funnel_tf.demo_data"],
    package_dir={"funnel_tf.configs": "configs", "funnel_tf.demo_data": "data"},
    package_data={"funnel_tf.configs": ["*.json"], "funnel_tf.demo_data": ["*.txt"]},
    py_modules=["pretrain", "finetune"],
    python_requires=">=3.10",
    # TensorFlow itself comes from an extra: `[cpu]` (or `[test]`) brings the standard `tensorflow`
    # wheel, `[tpu]` keeps the TPU build (`tensorflow-tpu`), which installs into the same
    # `tensorflow/` folder and would be overwritten by it (README: "On a TPU VM").
    install_requires=[
        "tensorflow-datasets",
        "absl-py",
        "sentencepiece",
        "safetensors",
        "h5py",
        "numpy",
    ],
    extras_require={
        "cpu": STANDARD_TF,
        "gpu": STANDARD_TF,
        "test": STANDARD_TF + TEST,
        # The TPU build (2.19/2.20 are the last); tensorflow-text goes in with --no-deps (its
        # requirement on `tensorflow` would pull the standard wheel over it).
        "tpu": ["tensorflow-tpu>=2.19,<2.21"],
        "tpu-test": ["tensorflow-tpu>=2.19,<2.21"] + TEST,
        "jax": JAX,
        # Live cross-checks against HuggingFace (PyTorch) and the benchmarks' peer.
        # torch is pinned: an unpinned torch pulls a multi-GB CUDA build on a CPU-only machine.
        "reference": ["torch==2.13.0", "transformers>=4.57,<6"],
    },
    entry_points={
        "console_scripts": [
            "funnel-pretrain=funnel_tf.entry_points:pretrain",
            "funnel-finetune=funnel_tf.entry_points:finetune",
            "funnel-convert=funnel_tf.entry_points:convert",
            "funnel-text=funnel_tf.entry_points:text",
            "funnel-glue-submission=funnel_tf.entry_points:glue_submission",
        ],
    },
)
