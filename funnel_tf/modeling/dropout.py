"""The Dropout layer every Funnel layer uses: Keras' semantics and SeedGenerator, the mask drawn by
modeling/kernels.py (keras.random on every backend; on TF a named fast RNG, tf_kernels/dropout.py)."""

import keras

from funnel_tf.modeling import kernels


class Dropout(keras.layers.Dropout):
    """keras.layers.Dropout whose training-mode mask comes from `kernels.apply_dropout`."""

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        return kernels.apply_dropout(self, inputs)
