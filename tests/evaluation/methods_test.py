"""Tests of the method registry."""

import pytest

import tf_metaloss as tml
from tf_metaloss.evaluation import methods


def test_methods_cover_the_issue(small_config):
    groups = {name: methods.METHODS[name].group for name in methods.DEFAULT_METHODS}
    assert [n for n, g in groups.items() if g == "baseline"] == [
        "ce",
        "focal",
        "label_smoothing",
        "poly1",
        "gce",
        "sce",
        "finetune",
        "glc",
        "forward",
    ]
    assert [n for n, g in groups.items() if g == "learned"] == [
        "meta_loss",
        "blend",
        "polynomial",
        "neural",
        "sample_weighted",
    ]
    assert {n: methods.METHODS[n].training for n in ("finetune", "glc", "forward")} == {
        "finetune": "finetune",
        "glc": "glc",
        "forward": "forward",
    }
    assert methods.METHODS["frozen"].training == "frozen"
    assert methods.METHODS["schedule"].training == "schedule"
    assert methods.METHODS["oracle"].clean_labels
    config = small_config()
    for name in methods.DEFAULT_METHODS:
        method = methods.METHODS[name]
        loss = method.make_loss(config, 0)
        assert loss.from_logits
        learnable = method.training in ("meta", "frozen", "schedule")
        assert isinstance(loss, tml.LearnableLoss) == learnable, name
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


def test_every_method_says_what_it_trains_on():
    # The meta-learned methods train on the noisy part, and on the meta set with
    # their loss at its start (MetaModel's own meta data term); every other
    # method trains on the noisy part plus the meta set.
    for name, method in methods.METHODS.items():
        expected = "train" if method.training == "meta" else "train+meta"
        assert method.train_data == expected, name
        described = method.describe()
        assert described["train_data"] == expected and described["name"] == name
        assert set(described) == {
            "name",
            "label",
            "group",
            "training",
            "train_data",
            "clean_labels",
        }
    make = methods.METHODS["ce"].make_loss
    assert methods.Method(
        "x", "x", "learned", make, "meta", train_data="train+meta"
    ).train_data == ("train+meta")
    with pytest.raises(ValueError, match="`train_data`"):
        methods.Method("x", "x", "baseline", make, train_data="meta")
    with pytest.raises(ValueError, match="'train\\+meta' for the two-stage training 'glc'"):
        methods.Method("x", "x", "baseline", make, "glc", train_data="train")


def test_every_method_carries_the_default_probes():
    names = {p.__name__ for p in methods.METHODS["ce"].probes}
    assert names == {"sample_weight_separation", "transition_estimate"}
    assert all(m.probes == methods.METHODS["ce"].probes for m in methods.METHODS.values())
