"""What a run may ask the engine for, by name: the one definition of each list. TensorFlow-free,
so the flag definitions (flags_from_args.py) import them without slowing --help."""

STRATEGIES = ("default", "cpu", "one_device", "mirrored", "multi_worker", "tpu")  # strategy.py
PRECISIONS = ("auto", "float32", "mixed_bfloat16")   # precision.py resolves "auto"
JIT_MODES = ("auto", "true", "false")                 # --jit_compile's spellings
