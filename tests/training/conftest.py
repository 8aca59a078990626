"""One MirroredStrategy over the two logical CPUs for the whole session: separate strategy objects
in one process can reuse collective instance keys and abort each other's all-reduces."""

import pytest
import tensorflow as tf


@pytest.fixture(scope="session")
def mirrored():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
