"""Distribution strategies from explicit arguments: TPU, multi-GPU, multi-worker, CPU.

One function, `make_strategy`, turns a kind name plus TPU coordinates into a ready
`tf.distribute.Strategy` (for TPUs it also connects to the cluster and initialises the TPU
system). Every MirroredStrategy built in this process gets its own collective keys
(collective_keys.py, installed on import). Precision is precision.py's.
No flags here: `pretrain.py` / `finetune.py` pass plain values.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Optional, Sequence

import tensorflow as tf
from absl import logging

from funnel_tf.engine import collective_keys
from funnel_tf.engine.choices import STRATEGIES
from funnel_tf.errors import UserError

collective_keys.install()  # before any MirroredStrategy this module builds (idempotent)


class StrategyError(UserError, ValueError):
    """A strategy request that cannot be satisfied on this machine; the message says why."""


def make_strategy(kind: str = "default", tpu: Optional[str] = None, zone: Optional[str] = None,
                  project: Optional[str] = None,
                  devices: Optional[Sequence[str]] = None) -> tf.distribute.Strategy:
    """Build a `tf.distribute.Strategy`.

    kind:
      default       TF's default strategy (one replica on whatever device TF picks).
      cpu           `OneDeviceStrategy("/cpu:0")`.
      one_device    `OneDeviceStrategy` on `devices[0]` (default: the first GPU, else the CPU).
      mirrored      `MirroredStrategy` over `devices` (default: every local GPU, else every CPU).
      multi_worker  `MultiWorkerMirroredStrategy` configured from the `TF_CONFIG` environment.
      tpu           `TPUStrategy`. `tpu` is a TPU name, a `grpc://` address, or "local"/"" on a
                    TPU VM (the default); `zone`/`project` locate a named TPU.
    `tpu` given with any other kind is an error (a typo would silently train on CPU otherwise).
    """
    kind = (kind or "default").lower()
    if kind not in STRATEGIES:
        raise StrategyError(f"unknown strategy {kind!r}; choose one of {STRATEGIES}")
    if tpu and kind != "tpu":
        raise StrategyError(f"--tpu={tpu!r} was given but the strategy is {kind!r}; "
                            f"use strategy 'tpu' (or drop --tpu)")
    if kind == "tpu":
        return _tpu_strategy(tpu, zone, project)
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if kind == "one_device":
        device = (list(devices) if devices else None) or _local_devices()[:1]
        return tf.distribute.OneDeviceStrategy(device[0])
    if kind == "mirrored":
        devices = list(devices) if devices else _local_devices()
        if len(devices) < 2:
            logging.warning("MirroredStrategy with a single device %s: this is a one-replica run",
                            devices)
        return tf.distribute.MirroredStrategy(devices)
    # multi_worker
    check_tf_config(os.environ.get("TF_CONFIG", ""))
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if not resolver.cluster_spec().as_dict():
        logging.warning("multi_worker strategy without TF_CONFIG: running as a single worker")
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver,
                                                         communication_options=options)
    except RuntimeError as e:
        if "must be configured at program startup" not in str(e):
            raise
        # A programming error, not a user one: TF ran an op (built a model, read a device list
        # that initialises the runtime...) before the strategy existed.
        raise RuntimeError("make_strategy('multi_worker') must run before TensorFlow executes "
                           "anything (no model, tensor or op before it): collective ops can "
                           "only be configured at program startup") from e


def check_tf_config(raw: str) -> Optional[dict]:
    """Parse and check a TF_CONFIG value for multi-worker training (None when empty); a malformed
    one is a StrategyError naming the problem, before TF turns it into an obscure failure or
    a hang (a worker waiting for a peer that can never come)."""
    if not raw.strip():
        return None
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({e.msg} at character {e.pos}); "
                            f"expected e.g. {{\"cluster\": {{\"worker\": [\"host1:port\", "
                            f"\"host2:port\"]}}, \"task\": {{\"type\": \"worker\", "
                            f"\"index\": 0}}}}") from None
    cluster = cfg.get("cluster") if isinstance(cfg, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise StrategyError("TF_CONFIG has no \"cluster\" (a dict of job name -> list of "
                            "\"host:port\" addresses)")
    jobs = {k: v for k, v in cluster.items() if k in ("chief", "worker")}
    if not jobs:
        raise StrategyError(f"TF_CONFIG cluster has no \"worker\" or \"chief\" job (it has "
                            f"{sorted(cluster)}); multi_worker needs at least one")
    seen = set()
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise StrategyError(f"TF_CONFIG cluster job {job!r} must be a non-empty list of "
                                f"\"host:port\" addresses, got {addresses!r}")
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise StrategyError(f"TF_CONFIG cluster job {job!r}: {address!r} is not a "
                                    f"\"host:port\" address")
            if address in seen:
                raise StrategyError(f"TF_CONFIG cluster lists {address!r} twice; every task "
                                    f"needs its own address")
            seen.add(address)
    task = cfg.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise StrategyError("TF_CONFIG has no \"task\" with a \"type\" and an \"index\" "
                            "(which of the cluster's tasks this process is)")
    kind, index = task["type"], task["index"]
    if isinstance(index, str) and index.isdigit():
        index = int(index)
    if kind not in cluster:
        raise StrategyError(f"TF_CONFIG task type {kind!r} is not a job of the cluster "
                            f"({sorted(cluster)})")
    if isinstance(index, bool) or not isinstance(index, int) or \
            not 0 <= index < len(cluster[kind]):
        n = len(cluster[kind])
        raise StrategyError(f"TF_CONFIG task index {index!r} is out of range for job {kind!r} "
                            f"with {n} address(es): use 0..{n - 1}")
    return cfg


def _local_devices():
    """Every local GPU, or every logical CPU when there is no GPU."""
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [d.name for d in gpus]
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _tpu_strategy(tpu, zone, project):
    """Resolve, connect (remote TPUs only), initialise, and wrap the TPU in a TPUStrategy."""
    name = tpu if tpu is not None else "local"
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name, zone=zone,
                                                                     project=project)
    except (ValueError, RuntimeError) as e:
        raise StrategyError(
            f"could not resolve TPU {name!r} (zone={zone!r}, project={project!r}): {e}. "
            f"On a TPU VM use --tpu=local; for a named TPU pass --tpu, --tpu_zone and "
            f"--gcp_project") from e
    try:
        if name not in ("", "local"):
            # Remote TPU (a TPU Node or a pod coordinator): attach this client to its cluster.
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (tf.errors.OpError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise StrategyError(
            f"TPU {name!r} could not be initialised ({first}). This needs a TPU VM (or a reachable "
            f"TPU) and a TPU build of TensorFlow (tensorflow-tpu 2.19/2.20 with libtpu)") from e
    strategy = tf.distribute.TPUStrategy(resolver)
    logging.info("TPU %r: %d cores across %d host(s)", name, strategy.num_replicas_in_sync,
                 strategy.extended.num_hosts)
    return strategy


# ---------------------------------------------------------------------------------- descriptions
@dataclasses.dataclass(frozen=True)
class StrategyInfo:
    """What the loop needs to know about a strategy, in plain Python values."""

    kind: str                 # "default", "one_device", "mirrored", "multi_worker", "tpu"
    num_replicas: int         # replicas in sync (global batch is split this many ways)
    num_workers: int          # hosts / input pipelines
    is_chief: bool            # this process writes checkpoints and summaries
    supports_preemption_handler: bool   # TF's PreemptionCheckpointHandler saves on a preemption
                                        # here (tf_preemption_handler_works)

    def describe(self) -> str:
        return (f"{self.kind}: {self.num_replicas} replica(s) on {self.num_workers} worker(s)"
                f"{'' if self.is_chief else ' [non-chief]'}")


def strategy_info(strategy: tf.distribute.Strategy) -> StrategyInfo:
    """Summarise `strategy` (kind, replica and worker counts, chief-ness)."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        kind = "tpu"
    elif isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        kind = "multi_worker"
    elif isinstance(strategy, tf.distribute.MirroredStrategy):
        kind = "mirrored"
    elif isinstance(strategy, tf.distribute.OneDeviceStrategy):
        kind = "one_device"
    else:
        kind = "default"
    num_workers, chief = 1, True
    if kind == "multi_worker":
        resolver = strategy.cluster_resolver
        spec = resolver.cluster_spec().as_dict() if resolver else {}
        num_workers = max(1, sum(len(v) for k, v in spec.items() if k in ("chief", "worker")))
        task_type = getattr(resolver, "task_type", None)
        task_id = getattr(resolver, "task_id", 0) or 0
        chief = (task_type in (None, "chief")
                 or (task_type == "worker" and task_id == 0 and "chief" not in spec))
    elif kind == "tpu":
        num_workers = strategy.extended.num_hosts
    return StrategyInfo(kind=kind, num_replicas=strategy.num_replicas_in_sync,
                        num_workers=num_workers, is_chief=chief,
                        supports_preemption_handler=tf_preemption_handler_works(kind))


# Platforms (failure_handling_util.PlatformDevice names) on which TF 2.19-2.21's
# PreemptionCheckpointHandler does nothing: failure_handling.py logs "does not support usage with
# TPU or CPU device on GCP" and its run() just calls the step, so a preempted Cloud TPU VM or GCE
# CPU VM would save nothing. Elsewhere it saves: off GCP (SIGTERM, or Borg's notice on TPUs) and on
# GCE GPU VMs (the metadata server's maintenance event).
_HANDLER_DOES_NOTHING_ON = ("GCE_TPU", "GCE_CPU")


def tf_preemption_handler_works(kind: str) -> bool:
    """True where TF's PreemptionCheckpointHandler both applies to the strategy kind (TPUStrategy,
    MultiWorkerMirroredStrategy) and is implemented on this platform; the loop saves on SIGTERM
    itself everywhere else (loop.py)."""
    return kind in ("tpu", "multi_worker") and preemption_platform() not in _HANDLER_DOES_NOTHING_ON


@functools.lru_cache(maxsize=None)
def preemption_platform() -> str:
    """TF's name for where this process runs ("GCE_TPU", "INTERNAL_CPU", ...), as the preemption
    handler detects it (asks the GCE metadata server once; the runtime must be up)."""
    # private: TF exports no API for the platform its PreemptionCheckpointHandler detects
    from tensorflow.python.distribute.failure_handling import failure_handling_util

    return failure_handling_util.detect_platform().name
