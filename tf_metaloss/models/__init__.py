"""Models that meta-learn their loss: `MetaModel`."""

from tf_metaloss.models.meta_model import MetaModel

__all__ = ["MetaModel"]
