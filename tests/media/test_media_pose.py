"""media.pose: the EPnP head pose recovers the rotation of a projected generic face; the
sharpness measure falls with blur."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lipforcing.media.pose import (
    FACE_3D,
    camera_matrix,
    euler_from_rotation,
    head_pose,
    rotation_from_euler,
    sharpness,
)

ANGLES = [(0, 0, 0), (25, 0, 0), (0, -15, 0), (0, 0, 12), (-30, 10, -5)]


@pytest.mark.parametrize("angles", ANGLES)
def test_pose_of_a_projected_face_is_recovered(angles):
    k = camera_matrix((240, 320))
    x = FACE_3D @ rotation_from_euler(*angles).T + np.array([12.0, -8.0, 450.0])
    p = x @ k.T
    points = (p[:, :2] / p[:, 2:])[None]  # (1, 5, 2)
    np.testing.assert_allclose(head_pose(points, (240, 320))[0], angles, atol=0.05)


def test_euler_round_trip_and_missing_faces():
    r = rotation_from_euler(10, 20, 30)
    np.testing.assert_allclose(euler_from_rotation(r), (10, 20, 30), atol=1e-9)
    assert np.isnan(head_pose(np.full((2, 5, 2), np.nan), (64, 64))).all()


def test_sharpness_drops_with_blur():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(image[0], (0, 0), 2)[None]
    assert sharpness(image)[0] > 10 * sharpness(blurred)[0]
