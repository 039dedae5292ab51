"""Tests of `CompareConfig`."""

import pytest


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seeds": ()}, "seeds"),
        ({"seeds": (0, 0)}, "distinct"),
        ({"epochs": 0}, "epochs"),
        ({"noise_rate": 1.5}, "noise_rate"),
        ({"noise_kind": "pairs"}, "noise_kind"),
        ({"eval_split": "test"}, "eval_split"),
        ({"meta_fraction": 0.0}, "meta_fraction"),
        ({"meta_every": 0}, "frozen ablation"),
        ({"meta_learning_rate": -1.0}, "meta_learning_rate"),
        ({"meta_clipnorm": 0.0}, "meta_clipnorm"),
        ({"model": "resnet"}, "model"),
        ({"schedule_final": {}}, "schedule_final"),
    ],
)
def test_config_validation(small_config, kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_config(**kwargs)
