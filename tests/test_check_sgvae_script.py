"""scripts/check_sgvae_encoder_variants.py: its orbit-pooling encoder keeps the exact quarter-turn invariance, and
its two ways of passing the copies (one batch, or one pass per copy) agree wherever batch statistics play no
part (eval mode)."""

import copy
import importlib.util

import pytest
import torch

from rotcore.metrics import invariance_error
from rotcore.models.svae import DecoderConfig, EncoderConfig, VAEConfig, build_vae
from rotcore.paths import project_root


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location(
        "check_sgvae_encoder_variants", project_root() / "scripts" / "check_sgvae_encoder_variants.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def small_orbit_vae(script, **kw):
    torch.manual_seed(0)
    vae = build_vae(VAEConfig(latent_dim=6, encoder=EncoderConfig(group="C8", width=0.1, fc=(16,)),
                              decoder=DecoderConfig(channels=(8, 8, 4))))
    vae.encoder = script.OrbitPooled(vae.encoder, (45.0,), **kw)
    return vae


@pytest.mark.parametrize("kw", [dict(joint=False), dict(joint=True), dict(reduce="mean")])
def test_orbit_pooled_code_is_invariant_to_quarter_turns(script, kw):
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    errs = invariance_error(small_orbit_vae(script, **kw), x, (90.0, 180.0, 270.0), dtype=torch.float64)
    assert max(errs.values()) <= 1e-12, errs


def test_joint_and_per_copy_passes_agree_in_eval_mode(script):
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    joint = small_orbit_vae(script, joint=True)
    per_copy = copy.deepcopy(joint)
    per_copy.encoder.joint = False
    with torch.no_grad():
        a, b = joint.eval().encoder(x), per_copy.eval().encoder(x)
        assert torch.allclose(a, b, atol=1e-5)
        # and the orbit changes the encoder's output (it is not the bare encoder)
        assert not torch.allclose(a, joint.encoder.encoder(x), atol=1e-4)


def test_every_variant_builds_and_an_unknown_one_is_refused(script):
    from rotcore.studies import svae

    vc = svae.vae_config("sgvae", svae.PROFILES["smoke"])
    assert script.build("orbit_joint_c4", vc, 0).config.encoder.group == "C4"
    assert script.build("orbit_joint_w0.2", vc, 0).config.encoder.width == 0.2
    assert isinstance(script.build("orbit_mean", vc, 0).encoder, script.OrbitPooled)
    with pytest.raises(SystemExit, match="unknown variant"):
        script.build("orbits", vc, 0)
    with pytest.raises(ValueError, match="reduce='sum'"):
        script.OrbitPooled(torch.nn.Identity(), reduce="sum")
