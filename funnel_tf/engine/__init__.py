"""The training engine: what every run needs (loop, update, strategy, checkpoints, preemption,
progress, run lock), TensorFlow today; a JAX engine sits beside it."""
