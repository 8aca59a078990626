"""Several hosts for the JAX engine: `jax.distributed.initialize()` from the environment, as JAX
reads it, before any JAX computation; and the few cross-process agreements the host loop needs
(one stop decision for every process, a barrier before exit).

- JAX_COORDINATOR_ADDRESS (host:port of process 0) with JAX_NUM_PROCESSES and JAX_PROCESS_ID:
  initialize(address, count, id) (localhost tests, GPU clusters without a scheduler);
- a multi-host TPU VM / GKE TPU slice (TPU_WORKER_HOSTNAMES or TPU_PROCESS_ADDRESSES list several
  hosts), or JAX_DISTRIBUTED=auto (Slurm, Open MPI, TPU metadata): initialize() with no args;
- otherwise one process: nothing to do.
On CPU the collectives are JAX's default (gloo in jax 0.10), set before initialize."""

from __future__ import annotations

import os
from typing import Optional

from funnel_tf.errors import UserError

AUTO_ENV = "JAX_DISTRIBUTED"


class DistributedSetupError(UserError, ValueError):
    """The multi-process environment variables are incomplete or malformed."""


def _int_env(name: str) -> Optional[int]:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise DistributedSetupError(f"{name}={raw!r}: must be an integer") from None
    if value < 0:
        raise DistributedSetupError(f"{name}={raw}: must be >= 0")
    return value


def _tpu_pod() -> bool:
    """A TPU slice of several hosts, by the variables its runtime sets."""
    for name in ("TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES"):
        hosts = [h for h in os.environ.get(name, "").split(",") if h.strip()]
        if len(hosts) > 1:
            return True
    return False


def distributed_args() -> Optional[dict]:
    """The keyword arguments of jax.distributed.initialize() this environment asks for, or None
    (a single process). Checked before anything runs: one UserError for a bad setting."""
    address = os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    count, index = _int_env("JAX_NUM_PROCESSES"), _int_env("JAX_PROCESS_ID")
    if address is not None:
        if ":" not in address:
            raise DistributedSetupError(f"JAX_COORDINATOR_ADDRESS={address}: must be host:port "
                                        f"of process 0")
        if (count is None) != (index is None) and not os.environ.get(AUTO_ENV) == "auto":
            raise DistributedSetupError("set both JAX_NUM_PROCESSES and JAX_PROCESS_ID with "
                                        "JAX_COORDINATOR_ADDRESS (or neither, on a cluster "
                                        "JAX detects)")
        if count is not None and index is not None and index >= count:
            raise DistributedSetupError(f"JAX_PROCESS_ID={index} is not below "
                                        f"JAX_NUM_PROCESSES={count}")
        return {"coordinator_address": address, "num_processes": count, "process_id": index}
    if count is not None or index is not None:
        raise DistributedSetupError("JAX_NUM_PROCESSES / JAX_PROCESS_ID need "
                                    "JAX_COORDINATOR_ADDRESS (host:port of process 0)")
    if os.environ.get(AUTO_ENV) == "auto" or _tpu_pod():
        return {}
    return None


def initialize_from_env() -> bool:
    """jax.distributed.initialize() when the environment describes several processes (see the
    module docstring); idempotent. Returns whether this run is multi-process-initialized. Must run
    before the first JAX computation (device lists included)."""
    import jax
    from jax._src import distributed as jax_distributed

    if jax_distributed.global_state.client is not None:
        return True
    kwargs = distributed_args()
    if kwargs is None:
        return False
    jax.distributed.initialize(**{k: v for k, v in kwargs.items() if v is not None})
    return True


def agree(flag: bool) -> bool:
    """True when `flag` is set on any process (every process gets the same answer: a stop
    requested on one host stops all of them at the same step). One small collective per call;
    free with one process."""
    import jax

    if jax.process_count() == 1:
        return bool(flag)
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray([int(bool(flag))],
                                                                    np.int32))))


def barrier(name: str) -> None:
    """Wait until every process reaches `name` (the others wait while the chief writes)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
