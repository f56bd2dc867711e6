"""scripts/check_cvae_unseen_angles.py: the nearest trained angle of an unseen angle, across the 0°/360° seam."""

import importlib.util

import torch

from rotcore.paths import project_root
from rotcore.rotate import distance_to_intervals_deg


def test_nearest_trained_angle_is_the_nearest_interval_end_across_the_seam():
    spec = importlib.util.spec_from_file_location(
        "check_cvae_unseen_angles", project_root() / "scripts" / "check_cvae_unseen_angles.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    intervals = ((0.0, 30.0), (60.0, 90.0), (270.0, 360.0))
    angles = torch.tensor([45.0, 40.0, 55.0, 105.0, 175.0, 185.0, 255.0])
    near = script.nearest_trained_deg(angles, intervals)
    assert near.tolist() == [30.0, 30.0, 60.0, 90.0, 90.0, 270.0, 270.0]
    # its distance is the distance to the training set
    gap = (torch.remainder(angles.double() - near + 180, 360) - 180).abs()
    assert torch.allclose(gap, distance_to_intervals_deg(angles, intervals))
    assert script.nearest_trained_deg(torch.tensor([350.0, 5.0]), ((20.0, 40.0), (300.0, 340.0))).tolist() == [340.0, 20.0]
