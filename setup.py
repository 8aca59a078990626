"""funnel-tf: Funnel-Transformer in TensorFlow 2 / Keras 3, built for TPU training."""

from setuptools import find_packages, setup

setup(
    name="funnel-tf",
    version="0.1.0",
    description="Funnel-Transformer (Dai et al. 2020) in TF2/Keras 3 for TPU/GPU/CPU training",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["funnel_tf", "funnel_tf.*"]),
    py_modules=["pretrain", "finetune"],
    python_requires=">=3.10",
    install_requires=[
        # TF 2.19/2.20 are the last TPU builds; CPU CI pins 2.21 through .ci/run.
        "tensorflow>=2.19,<2.22",
        # tensorflow-text must match TF's minor version (2.21.0 fails on import; use 2.21.1).
        "tensorflow-text>=2.19,<2.22,!=2.21.0",
        "tensorflow-datasets",
        "absl-py",
        "sentencepiece",
        "safetensors",
        "h5py",
        "numpy",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout"],
        # Live cross-checks against HuggingFace (PyTorch) and the benchmarks' peer.
        # torch is pinned: an unpinned torch pulls a multi-GB CUDA build on a CPU-only machine.
        "reference": ["torch==2.13.0", "transformers>=4.57,<6"],
        "tpu": [],  # TPUClusterResolver ships with TensorFlow; cloud-tpu-client is not needed.
    },
    entry_points={
        "console_scripts": [
            "funnel-convert=funnel_tf.convert:run",
        ],
    },
)
