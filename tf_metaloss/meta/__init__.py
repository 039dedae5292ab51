"""The meta step's building blocks: estimators, the lookahead, meta data."""

from tf_metaloss.meta import data
from tf_metaloss.meta import estimators

__all__ = ["data", "estimators"]
