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


def small_orbit_vae(script, angles=(0.0, 45.0), **kw):
    torch.manual_seed(0)
    vae = build_vae(VAEConfig(latent_dim=6, encoder=EncoderConfig(group="C8", width=0.1, fc=(16,)),
                              decoder=DecoderConfig(channels=(8, 8, 4))))
    vae.encoder = script.OrbitPooled(vae.encoder, angles, **kw)
    return vae


@pytest.mark.parametrize("kw", [dict(joint=False), dict(joint=True), dict(reduce="mean"),
                                dict(angles=(-22.5, 22.5), joint=True)])
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


def test_copywise_batch_norm_makes_a_joint_batch_train_like_one_pass_per_copy(script):
    """In training, the joint batch with per-copy statistics gives the per-copy passes' features exactly, and
    differs from the joint batch with shared statistics (so the test can fail)."""
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(3)) * 0.5
    x[:, :, 8:20, 12:16] += 0.5  # a bar, so the 45° copy's statistics differ from the input's
    per_copy = small_orbit_vae(script, joint=False).encoder.train()
    joint = copy.deepcopy(per_copy)
    joint.joint = True
    copywise = script.copywise_batch_norm(copy.deepcopy(joint))
    copies = [x, script.rotate_batch(x, 45.0)]

    def feats(orbit):
        with torch.no_grad():
            if orbit.joint:
                return script.group_pooled(orbit.encoder, torch.cat(copies))
            return torch.cat([script.group_pooled(orbit.encoder, c) for c in copies])

    assert torch.allclose(feats(copywise), feats(per_copy), atol=1e-5)
    assert not torch.allclose(feats(joint), feats(per_copy), atol=1e-3)


def test_every_variant_builds_and_an_unknown_one_is_refused(script):
    from rotcore.studies import svae

    vc = svae.vae_config("sgvae", svae.PROFILES["smoke"])
    assert script.build("orbit_joint_c4", vc, 0).config.encoder.group == "C4"
    assert script.build("orbit_joint_w0.2", vc, 0).config.encoder.width == 0.2
    assert isinstance(script.build("orbit_mean", vc, 0).encoder, script.OrbitPooled)
    assert script.build("orbit_sym", vc, 0).encoder.angles == (-22.5, 22.5)
    assert any(isinstance(m, script.CopyWise) for m in script.build("orbit_joint_pcbn", vc, 0).modules())
    with pytest.raises(SystemExit, match="unknown variant"):
        script.build("orbits", vc, 0)
    with pytest.raises(ValueError, match="reduce='sum'"):
        script.OrbitPooled(torch.nn.Identity(), reduce="sum")


def test_the_scripts_orbit_sym_is_the_studys_orbit_pooling(script):
    """The study's S-GVAE (``svae.ORBIT_DEG``, :class:`rotcore.models.svae.OrbitPooled`) is the script's
    ``orbit_sym`` variant: same weights from the same seed, same outputs in training and in eval mode."""
    from rotcore.models.svae import OrbitPooled
    from rotcore.studies import svae

    vc = svae.vae_config("sgvae", svae.PROFILES["smoke"])
    assert vc.encoder.orbit_deg == svae.ORBIT_DEG
    torch.manual_seed(0)
    study_vae = build_vae(vc)
    script_vae = script.build("orbit_sym", vc, 0)
    assert isinstance(study_vae.encoder, OrbitPooled) and isinstance(script_vae.encoder, script.OrbitPooled)
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        for mode in (True, False):
            a = study_vae.train(mode).posterior_params(x)[0]
            b = script_vae.train(mode).posterior_params(x)[0]
            assert torch.allclose(a, b, atol=1e-5), mode
