"""Run a script as `__main__` in a process where TF believes it runs on GCP (a GCE VM, where TF's
PreemptionCheckpointHandler does nothing, as on a Cloud TPU VM):

    python -m tests.engine.on_gcp pretrain.py --flag=value ...
"""

import runpy
import sys

from tests.engine.preemption_driver import pretend_gcp

if __name__ == "__main__":
    pretend_gcp()
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
