import pytest
import torch

from rotcore.config import ConfigError
from rotcore.metrics import invariance_error
from rotcore.models.classifier import ClassifierConfig, build_classifier
from rotcore.train import count_parameters

SMALL = dict(width=0.1)


@pytest.fixture(scope="module")
def x():
    return torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("group, restrict", [("C8", None), ("C16", None), ("D16", 5), ("C4", None)])
def test_gcnn_is_invariant_to_quarter_turns(x, group, restrict):
    model = build_classifier(ClassifierConfig(group=group, restrict_at=restrict, **SMALL))
    errs = invariance_error(model, x, [90, 180, 270], dtype=torch.float64)
    # exact to float64 rounding (escnn's own float32-sampled basis alone gives ~1e-7 relative)
    assert max(errs.values()) <= 1e-12, errs


@pytest.mark.parametrize("group, restrict", [("C8", None), ("D16", 5)])
def test_quarter_turn_invariance_does_not_depend_on_the_weights(x, group, restrict):
    """Study 05 checks trained models against this bound (``invariance_err_rot90_max``): the invariance is
    a property of the architecture, so weights far from their initialisation keep it."""
    with torch.random.fork_rng():  # leave the global RNG as the other tests expect it
        torch.manual_seed(0)
        model = build_classifier(ClassifierConfig(group=group, restrict_at=restrict, **SMALL))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.5 * torch.randn_like(p))
        model.train()
        model(x)  # move the batch-norm running statistics away from their defaults
    errs = invariance_error(model, x, [90, 180, 270], dtype=torch.float64)
    assert max(errs.values()) <= 1e-9, errs


@pytest.mark.parametrize("group", ["C8", "D16"])
def test_quarter_turn_symmetrised_basis_is_escnns_basis_up_to_float32_noise(group):
    from escnn import gspaces
    from escnn import nn as enn

    from rotcore.models.escnn_tools import r2conv

    gs = gspaces.rot2dOnR2(int(group[1:])) if group[0] == "C" else gspaces.flipRot2dOnR2(int(group[1:]))
    types = enn.FieldType(gs, [gs.trivial_repr]), enn.FieldType(gs, 2 * [gs.regular_repr])
    ours = r2conv(*types, 7)
    theirs = enn.R2Conv(*types, 7, initialize=False, recompute=True)  # recompute: not escnn's shared cache
    for a, b in zip(ours.basisexpansion.buffers(), theirs.basisexpansion.buffers()):
        assert a.shape == b.shape
        if a.is_floating_point():
            assert 0 < (a - b).abs().max() <= 1e-6 * b.abs().max()  # changed, but only at rounding level


def test_gcnn_is_only_approximately_invariant_at_45(x):
    model = build_classifier(ClassifierConfig(group="C8", **SMALL))
    model.eval()
    err = invariance_error(model, x, 45.0, relative=True)
    assert 0 < err < 1.0  # bounded, not zero: the pixel grid is not symmetric under 45°


def test_plain_cnn_is_not_invariant(x):
    model = build_classifier(ClassifierConfig(group="C1", **SMALL))
    assert invariance_error(model, x, 90.0) > 1e-3


def test_group_pooling_equals_escnn(x):
    from escnn import nn as enn

    model = build_classifier(ClassifierConfig(group="C8", **SMALL)).eval()
    z = model.features(enn.GeometricTensor(x, model.in_type))
    gp = enn.GroupPooling(z.type)
    ref = enn.PointwiseAdaptiveMaxPool2D(gp.out_type, 1)(enn.ELU(gp.out_type)(gp(z))).tensor.flatten(1)
    assert torch.equal(model.invariant_features(z.tensor), ref)


def test_he_variances_equal_escnn():
    from escnn import nn as enn
    from escnn.nn.init import _generalized_he_init_variances

    from rotcore.models.escnn_tools import he_variances

    model = build_classifier(ClassifierConfig(group="D16", restrict_at=5, width=0.1))
    convs = [m for m in model.modules() if isinstance(m, enn.R2Conv)]
    assert len(convs) == 6
    for conv in convs:
        assert torch.equal(he_variances(conv.basisexpansion), _generalized_he_init_variances(conv.basisexpansion))


def test_builds_are_seeded_and_independent():
    cfg = ClassifierConfig(group="C8", **SMALL)
    torch.manual_seed(0)
    a = build_classifier(cfg)
    torch.manual_seed(0)
    b = build_classifier(cfg)
    c = build_classifier(cfg)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    with torch.no_grad():
        next(a.parameters()).add_(1.0)
    assert not torch.equal(next(a.parameters()), next(b.parameters()))  # copies share nothing


@pytest.mark.parametrize("group", ["C8", "C1"])
def test_a_seed_gives_the_same_weights_whether_or_not_the_network_was_built_before(group):
    """The first build of a config in a process (which builds and caches its template) and every later one
    draw the same weights from the same seed, and leave the RNG at the same point."""
    from rotcore.models.classifier import _template

    cfg = ClassifierConfig(group=group, width=0.07)
    _template.cache_clear()
    torch.manual_seed(3)
    first, after_first = build_classifier(cfg).state_dict(), torch.rand(4)
    torch.manual_seed(3)
    again, after_again = build_classifier(cfg).state_dict(), torch.rand(4)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert torch.equal(after_first, after_again)


def test_state_dict_keys_do_not_depend_on_mode():
    model = build_classifier(ClassifierConfig(group="C8", **SMALL))
    keys = set(model.state_dict())
    model.eval()
    model.train()
    assert set(model.state_dict()) == keys


def test_parameter_counts_are_comparable():
    counts = {g: count_parameters(build_classifier(ClassifierConfig(group=g, restrict_at=r, width=w * 0.25)))
              for g, r, w in [("C1", None, 0.8), ("C8", None, 1.0), ("C16", None, 1.0), ("D16", 5, 1.0)]}
    assert max(counts.values()) / min(counts.values()) < 1.5, counts


@pytest.mark.parametrize("kwargs, message", [
    ({"group": "SO2"}, "use C1"), ({"group": "C8", "restrict_at": 3}, "dihedral"),
    ({"group": "D16", "restrict_at": 9}, "restrict_at"), ({"channels": (1, 2)}, "one entry per convolution"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_classifier_configs(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ClassifierConfig(**kwargs)
