"""Models that meta-learn their loss: `MetaModel`."""

from tf_metaloss.models import guard
from tf_metaloss.models.guard import Guard
from tf_metaloss.models.meta_model import MetaModel

__all__ = ["Guard", "MetaModel", "guard"]
