"""`TaskError`: a finetuning request that cannot run, in its own module so that the recipes
(defaults.py) and the task interface (base.py) can both raise it."""

from funnel_tf.errors import UserError


class TaskError(UserError, ValueError):
    """A task request that cannot run (missing files, bad labels, wrong split); says why."""
