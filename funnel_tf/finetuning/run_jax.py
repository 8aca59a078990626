"""`run_finetuning(FinetuneArgs)` on the JAX engine (finetune.py --backend=jax; finetuning/run.py
dispatches the engine-specific steps here): GLUE (all 9, STS-B as regression), the
text-classification benchmarks and csv tasks. Everything else is the TensorFlow run's: the same
checks before anything is written, model_dir lock, run folder (config.json, task.json, run.json,
metrics.jsonl, TensorBoard, eval_results.jsonl, best/, predictions), metrics code and exit codes.

What differs: training is engine/jax's JaxTrainer (one jit-compiled step over every JAX device,
checkpoints/jax-<step>.npz, SIGTERM saves and stops), fed with numpy batches of the task's own
tf.data training pipeline; evaluation and --do_predict run `task.predict` jitted over the same eval
features (numpy batches of the Predictor's input pipeline). Not on JAX yet (one line, exit 2):
SQuAD and RACE, --export_dir (a TensorFlow SavedModel: export best/ with --backend=tensorflow),
tf.distribute strategies, several processes."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from funnel_tf.engine.jax.checkpoints import has_tf_checkpoint, list_checkpoints
from funnel_tf.engine.precision import Resolved, resolve_precision
from funnel_tf.finetuning.predictor import Predictor
from funnel_tf.finetuning.runner import FinetuneRunner
from funnel_tf.tasks.base import Task, TaskError
from funnel_tf.tasks.classification import SequenceClassificationTask

SUPPORTED = ("GLUE (cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte, wnli, ax), the "
             "text-classification benchmarks and csv")


def check_args(args) -> None:
    """What the JAX run cannot do, refused before anything is read or written."""
    if args.strategy not in (None, "default") or args.tpu:
        raise TaskError(f"--strategy={args.strategy}{' --tpu' if args.tpu else ''} is the "
                        f"TensorFlow engine's; with --backend=jax the run is data parallel over "
                        f"every JAX device")
    if args.export_dir:
        raise TaskError("--export_dir writes a TensorFlow SavedModel: finetune with "
                        "--backend=jax, then export its best/ with --backend=tensorflow "
                        "--init_checkpoint=<model_dir>/best --export_dir=...")


def check_task(task: Task) -> None:
    if not isinstance(task, SequenceClassificationTask):
        raise TaskError(f"--backend=jax finetunes {SUPPORTED}; {task.name} runs on "
                        f"--backend=tensorflow for now")


def check_model_dir(model_dir: str) -> None:
    """A model_dir of the TensorFlow engine is resumed by it, not by this one."""
    if tf.io.gfile.isdir(model_dir) and has_tf_checkpoint(model_dir):
        raise TaskError(f"--model_dir {model_dir} holds TensorFlow-engine checkpoints; resume it "
                        f"with --backend=tensorflow or use a new --model_dir")


def has_checkpoint(model_dir: str) -> bool:
    return tf.io.gfile.isdir(model_dir) and bool(list_checkpoints(model_dir))


def strategy() -> tf.distribute.Strategy:
    """TF's default strategy: the runner's bookkeeping (one chief, one input pipeline); the
    devices are JAX's."""
    return tf.distribute.get_strategy()


def resolve(precision: str) -> Resolved:
    """"auto" -> mixed_bfloat16 on a TPU, float32 elsewhere; every JAX step is XLA-compiled."""
    import jax

    kind = "tpu" if jax.default_backend() == "tpu" else "default"
    return Resolved(resolve_precision(precision, kind), True)


def jax_trainer(strategy, objective: Task, optimizer_fn, dataset_fn, loop, actions=()):
    """FinetuneRunner.trainer_type on JAX: the same objective, optimizer, batches and actions
    (Evaluate at the marks) as the TF engine's loop.Trainer, trained by engine/jax."""
    from funnel_tf.engine.jax.trainer import JaxTrainer

    del strategy
    objective.build()
    optimizer = optimizer_fn(objective.trainable_variables)
    schedule = optimizer._learning_rate  # the LearningRateSchedule make_optimizer was given

    def batches(start_batch: int):
        # the TF engine's training stream (seeded shuffle, repeat), from batch `start_batch` on
        ds = dataset_fn(tf.distribute.InputContext()).skip(start_batch)
        return ds.as_numpy_iterator()

    def learning_rate(step: int) -> float:
        return float(schedule(step)) if callable(schedule) else float(schedule)
    return JaxTrainer(objective, optimizer, batches, loop, learning_rate, actions=actions)


class JaxPredictor(Predictor):
    """Predictor's gathering (rows in dataset order, every row accounted for) over a jitted
    `task.predict` of the model's current weights, on numpy batches of the same eval pipeline."""

    def __init__(self, task: Task, model):
        import jax
        import keras

        self.strategy, self.task = strategy(), task
        variables = list(model.variables)

        def predict(values, features):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return dict(task.predict(model, features))
        compiled = jax.jit(predict)

        def step(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
            features = {k: v.numpy() for k, v in batch.items()}
            rows = features.pop("_row")
            numeric = {k: v for k, v in features.items() if v.dtype.kind in "biuf"}
            out = compiled([v.value for v in variables], numeric)
            out = {k: tf.convert_to_tensor(np.asarray(v)) for k, v in out.items()}
            out["_row"] = tf.convert_to_tensor(rows)
            return out
        self._step = step


class JaxFinetuneRunner(FinetuneRunner):
    """FinetuneRunner on the JAX engine: trains with JaxTrainer, predicts with JaxPredictor; the
    trained values go back into the Keras model before every evaluation (best/ saves it)."""

    trainer_type = staticmethod(jax_trainer)

    def __init__(self, task, hp, config, tokenizer, strategy, run):
        super().__init__(task, hp, config, tokenizer, strategy, run)
        import jax

        devices = jax.device_count()
        if hp.batch_size % devices:
            raise TaskError(f"batch_size {hp.batch_size} (global) is not divisible by the "
                            f"{devices} JAX devices")

    def _write_back(self) -> None:
        trainer = self._trainer
        if trainer is not None and getattr(trainer, "state", None) is not None:
            trainer.write_back()

    def _predict(self, split: str) -> Dict[str, np.ndarray]:
        self.build()
        if self._predictor is None:
            self._predictor = JaxPredictor(self.task, self.model)
        return self._predictor(self._data(split), self.hp.global_eval_batch_size)

    def evaluate_and_keep_best(self, step: int) -> Optional[dict]:
        self._write_back()
        return super().evaluate_and_keep_best(step)

    def train(self, do_eval: bool = True) -> dict:
        result = super().train(do_eval)
        self._write_back()  # the last model (saved as best/ when there is no evaluation)
        return result
