"""The backend seam: everything that depends on the Keras backend.

The loss families (`tf_metaloss.losses`) and the meta-gradient estimators
(`tf_metaloss.meta.estimators`) are written in `keras.ops` and call the few
functions below for what `keras.ops` cannot express: differentiation that the
meta step nests (`value_and_grad`, `vjp`, `jvp`, `stop_weight_gradient`) and the replica
arithmetic of distributed training (`num_replicas`, `all_reduce_sum`,
`replica_share`, `global_value`), and which process of a multi-worker job
writes files (`is_chief`, `worker_index`). `MetaTrainer` is the backend's training
loop, mixed into `tf_metaloss.MetaModel` the way Keras mixes its
per-backend trainer into `keras.Model`.

Only the TensorFlow backend is implemented. Importing `tf_metaloss` under
another Keras backend raises one `ImportError` that says what to do.
"""

import keras

SUPPORTED_BACKENDS = ("tensorflow",)

_backend = keras.backend.backend()
if _backend not in SUPPORTED_BACKENDS:
    raise ImportError(
        "tf_metaloss runs on the Keras backend(s) "
        f"{', '.join(repr(b) for b in SUPPORTED_BACKENDS)}. The active Keras "
        f"backend is {_backend!r}. Set the environment variable "
        "KERAS_BACKEND=tensorflow before Python imports keras (or "
        '"backend": "tensorflow" in ~/.keras/keras.json).'
    )

from tf_metaloss.backend.tensorflow.differentiation import jvp  # noqa: E402
from tf_metaloss.backend.tensorflow.differentiation import stop_weight_gradient  # noqa: E402
from tf_metaloss.backend.tensorflow.differentiation import value_and_grad  # noqa: E402
from tf_metaloss.backend.tensorflow.differentiation import vjp  # noqa: E402
from tf_metaloss.backend.tensorflow.distribution import all_reduce_sum  # noqa: E402
from tf_metaloss.backend.tensorflow.distribution import global_value  # noqa: E402
from tf_metaloss.backend.tensorflow.distribution import is_chief  # noqa: E402
from tf_metaloss.backend.tensorflow.distribution import num_replicas  # noqa: E402
from tf_metaloss.backend.tensorflow.distribution import replica_share  # noqa: E402
from tf_metaloss.backend.tensorflow.distribution import worker_index  # noqa: E402
from tf_metaloss.backend.tensorflow.trainer import MetaTrainer  # noqa: E402

__all__ = [
    "MetaTrainer",
    "SUPPORTED_BACKENDS",
    "all_reduce_sum",
    "global_value",
    "is_chief",
    "jvp",
    "num_replicas",
    "replica_share",
    "stop_weight_gradient",
    "value_and_grad",
    "vjp",
    "worker_index",
]
