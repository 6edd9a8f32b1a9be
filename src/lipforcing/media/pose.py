"""Head pose (yaw, pitch, roll) from the 5 alignment points, and how sharp the mouth region is.

Design choices:
- Pose: OpenCV's EPnP fit of a generic 3D face (eye centres, nose tip, mouth corners, average
  adult proportions in millimetres) to the 5 points, with a pinhole camera whose focal length
  is the frame's longer side. A generic face gives approximate angles (a few degrees), enough
  to report the range a recording covers and to catch a face turned away from the camera.
- Angles in degrees from the rotation R = Rz(roll) Ry(yaw) Rx(pitch) of the head in camera
  coordinates (x right, y down, z forward): yaw > 0 turns the face towards image-right,
  pitch > 0 tilts it down, roll > 0 turns it clockwise in the image.
- Sharpness: the variance of the Laplacian of the grey image (a standard focus measure); higher
  is sharper.
"""

from __future__ import annotations

import cv2
import numpy as np

# Generic face in mm, x right, y down, z away from the camera; the 5-point order of
# media.faces.five_from_68: image-left eye, image-right eye, nose tip, mouth corners.
FACE_3D = np.array(
    [
        [-31.5, 0.0, 0.0],
        [31.5, 0.0, 0.0],
        [0.0, 40.0, -32.0],
        [-25.0, 70.0, -8.0],
        [25.0, 70.0, -8.0],
    ]
)


def camera_matrix(frame_hw: tuple[int, int]) -> np.ndarray:
    """Pinhole intrinsics: focal length = the longer frame side, principal point = centre."""
    h, w = frame_hw
    f = float(max(h, w))
    return np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], np.float64)


def euler_from_rotation(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of ``R = Rz(roll) Ry(yaw) Rx(pitch)``."""
    yaw = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[2, 1], r[2, 2])
    roll = np.arctan2(r[1, 0], r[0, 0])
    return tuple(float(np.degrees(a)) for a in (yaw, pitch, roll))


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The inverse of :func:`euler_from_rotation` (degrees in, 3x3 out)."""
    y, p, r = np.radians([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def head_pose(landmarks: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Per-frame (yaw, pitch, roll) in degrees from 5-point landmarks.

    Args:
        landmarks: (T, 5, 2) pixels, NaN rows where no face was found.
        frame_hw: (height, width) of the frames.

    Returns:
        (T, 3) float64, NaN rows where there is no face or the fit fails.
    """
    k = camera_matrix(frame_hw)
    out = np.full((len(landmarks), 3), np.nan)
    for i, pts in enumerate(np.asarray(landmarks, np.float64)):
        if not np.isfinite(pts).all():
            continue
        ok, rvec, _ = cv2.solvePnP(FACE_3D, pts, k, None, flags=cv2.SOLVEPNP_EPNP)
        if ok:
            out[i] = euler_from_rotation(cv2.Rodrigues(rvec)[0])
    return out


def sharpness(images: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each grey image: (N, H, W, 3) uint8 -> (N,) float64."""
    out = np.empty(len(images))
    for i, image in enumerate(images):
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        out[i] = cv2.Laplacian(grey, cv2.CV_64F).var()
    return out


__all__ = ["FACE_3D", "camera_matrix", "euler_from_rotation", "head_pose", "sharpness"]
