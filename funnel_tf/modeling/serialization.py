"""Keras serialisation shared by every layer built as `cls(config: FunnelConfig, **extra)`."""

from typing import Tuple

from funnel_tf.config import FunnelConfig


class FunnelConfigSerializable:
    """Mixin (before the Keras base class): get_config stores the FunnelConfig as a dict plus the
    constructor arguments named in `config_args`; from_config rebuilds the FunnelConfig."""

    config_args: Tuple[str, ...] = ()

    def get_config(self):
        config = super().get_config()
        config.update(config=self.config.to_dict(), **{name: getattr(self, name) for name in self.config_args})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(FunnelConfig.from_dict(config.pop("config")), **config)
