"""What a trained method's loss knows about the label noise, measured after training.

A probe is a hook `probe(model, loss, split) -> dict` that a `Method` runs
after its last training stage. It looks at what the loss exposes and returns
`{}` when there is nothing to measure, so every method can carry the same
probes. Numbers in the returned dict become final metrics of the run (and are
summarised over seeds); anything else goes to the run's `diagnostics`.

- `sample_weight_separation`: for a loss with `sample_weights(y_true,
  y_pred)` (e.g. `SampleWeightedLoss`), how well its per-sample weights on the
  training data's noisy labels separate clean from corrupted samples (ROC AUC;
  1 = every clean sample weighs more than every corrupted one, 0.5 = chance).
- `transition_estimate`: for a loss with `transition_matrix()` (e.g. the
  `ForwardCorrectedLoss` of the GLC and forward-correction baselines, or a
  learned transition family), the matrix and its distance to the true noise
  transition matrix of the injected noise.

Example:

>>> [probe.__name__ for probe in tml.evaluation.probes.DEFAULT_PROBES]
['sample_weight_separation', 'transition_estimate']
"""

import keras
import numpy as np

from tf_metaloss.evaluation import metrics

PREDICT_BATCH_SIZE = 512


def sample_weight_separation(model, loss, split):
    """ROC AUC of the loss's sample weights, clean vs corrupted training samples.

    Runs when the loss has a `sample_weights(y_true, y_pred)` method and the
    training part has both clean and corrupted labels. The weights are
    computed on the whole training part at once (so a loss that normalises
    its weights by their mean does so over all of it), from the noisy labels
    the model trained on.

    Returns:
        `weight_auc`, `weight_clean_mean` and `weight_noisy_mean`, or `{}`.
    """
    if not callable(getattr(loss, "sample_weights", None)):
        return {}
    mask = np.asarray(split.noisy_mask, bool)
    if not mask.any() or mask.all():
        return {}
    predictions = model.predict(split.x_train, batch_size=PREDICT_BATCH_SIZE, verbose=0)
    weights = keras.ops.convert_to_numpy(loss.sample_weights(split.y_train, predictions))
    weights = np.asarray(weights, np.float64).reshape(-1)
    return {
        "weight_auc": metrics.roc_auc(weights, ~mask),
        "weight_clean_mean": float(weights[~mask].mean()),
        "weight_noisy_mean": float(weights[mask].mean()),
    }


def transition_estimate(model, loss, split):
    """The loss's noise transition matrix and its distance to the true one.

    Runs when the loss has a `transition_matrix()` method. The truth is the
    transition matrix realised on the training part (`split.noise_transition`,
    true labels to the noisy labels trained on).

    Returns:
        `transition_matrix` (nested lists) and `transition_distance` (mean
        total-variation distance between rows, see
        `metrics.transition_distance`), or `{}`.
    """
    if not callable(getattr(loss, "transition_matrix", None)):
        return {}
    matrix = np.asarray(keras.ops.convert_to_numpy(loss.transition_matrix()), np.float64)
    result = {"transition_matrix": matrix.tolist()}
    truth = getattr(split, "noise_transition", None)
    if truth is not None and np.shape(truth) == matrix.shape:
        result["transition_distance"] = metrics.transition_distance(matrix, truth)
    return result


DEFAULT_PROBES = (sample_weight_separation, transition_estimate)
