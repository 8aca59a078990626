"""The JAX training engine on `KERAS_BACKEND=jax`, beside the TensorFlow engine
(funnel_tf/engine/): pretraining (MLM, ELECTRA) and finetuning (GLUE, text classification), with
the tasks' own keras.ops losses. backend.py is import-light (no Keras, no JAX): it picks the
backend before Keras loads; the other modules need Keras running on JAX.
The runs on it are funnel_tf/pretraining/run_jax.py and funnel_tf/finetuning/run_jax.py."""
