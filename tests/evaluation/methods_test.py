"""Tests of the method registry."""

import pytest

import tf_metaloss as tml
from tf_metaloss.evaluation import methods


def test_methods_cover_the_issue(small_config):
    groups = {name: m.group for name, m in methods.METHODS.items()}
    assert [n for n, g in groups.items() if g == "baseline"] == [
        "ce",
        "focal",
        "label_smoothing",
        "poly1",
        "gce",
        "sce",
    ]
    assert [n for n, g in groups.items() if g == "learned"] == [
        "meta_loss",
        "blend",
        "polynomial",
        "neural",
        "sample_weighted",
    ]
    assert methods.METHODS["frozen"].training == "frozen"
    assert methods.METHODS["schedule"].training == "schedule"
    assert methods.METHODS["oracle"].clean_labels
    config = small_config()
    for name, method in methods.METHODS.items():
        loss = method.make_loss(config, 0)
        assert loss.from_logits
        assert isinstance(loss, tml.LearnableLoss) == (method.training != "fixed"), name
    # The fixed baselines carry the settings the issue asks for.
    assert methods.METHODS["focal"].make_loss(config, 0).options == {"gamma": 2.0}
    assert methods.METHODS["gce"].make_loss(config, 0).options == {"q": 0.7}


def test_method_validates_group_and_training():
    make = methods.METHODS["ce"].make_loss
    with pytest.raises(ValueError, match="`group`"):
        methods.Method("x", "x", "fancy", make)
    with pytest.raises(ValueError, match="`training`"):
        methods.Method("x", "x", "baseline", make, training="online")


def test_resolve_methods():
    assert methods.resolve_methods("ce, gce,ce") == ("ce", "gce")
    assert methods.resolve_methods(["ablations"]) == ("frozen", "schedule")
    assert methods.resolve_methods("all") == methods.DEFAULT_METHODS
    with pytest.raises(ValueError, match="Received: 'nope'"):
        methods.resolve_methods("ce,nope")
    with pytest.raises(ValueError, match="at least one"):
        methods.resolve_methods("")
