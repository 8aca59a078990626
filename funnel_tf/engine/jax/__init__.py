"""The JAX training engine: pretraining (MLM, ELECTRA) on `KERAS_BACKEND=jax`, beside the
TensorFlow engine (funnel_tf/engine/). backend.py is import-light (no Keras, no JAX): it picks the
backend before Keras loads; the other modules need Keras running on JAX.
The pretraining run on it is funnel_tf/pretraining/run_jax.py."""
