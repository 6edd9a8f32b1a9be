"""SynthTalk faces: a random identity drawn with OpenCV, posed by a per-frame similarity.

Geometry lives in face units: origin between the eyes, x to the image right, y down, the eye
distance is 1. A head pose (scale, rotation, translation) maps face units to pixels. The mouth
is drawn from three parameters (open, spread, round) and the jaw drops with the opening.
Landmarks are exact: the eye centres, the nose tip and the mouth corners of the relaxed mouth
(a tracker's stable anchor; the corners do not follow speech, so the crop does not wobble).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SHIFT = 4  # cv2 fixed-point bits for sub-pixel polygons
ONE = 1 << SHIFT

# Relaxed-face anchors in face units (left eye, right eye, nose tip, mouth corners).
EYE_Y, NOSE_Y, MOUTH_Y = 0.0, 0.62, 1.05


@dataclass(frozen=True)
class Identity:
    """Everything that makes one SynthTalk person look like themselves."""

    skin: tuple[float, float, float]
    lip: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    background: tuple[tuple[float, float, float], tuple[float, float, float]]
    background_angle: float
    face_w: float  # half width of the head ellipse, face units
    face_h: float  # half height
    face_cy: float  # centre of the head ellipse
    eye_w: float
    eye_h: float
    brow: float  # brow thickness
    brow_tilt: float
    nose: float  # nose length scale
    mouth_w: float  # relaxed mouth half width
    lip_up: float  # upper lip thickness
    lip_lo: float  # lower lip thickness
    hair_style: int  # 0 short, 1 long, 2 bald with sides, 3 fringe
    hair_len: float
    beard: bool
    glasses: bool
    light: float  # side lighting strength
    light_angle: float
    scale: float  # eye distance in fractions of the frame side
    centre: tuple[float, float]  # head position in fractions of the frame side

    @staticmethod
    def random(rng: np.random.Generator) -> Identity:
        tone = rng.uniform(0, 1)
        skin = np.array([255, 224, 196]) * (1 - tone) + np.array([120, 78, 52]) * tone
        skin = skin * rng.uniform(0.92, 1.05, 3)
        lip = skin * np.array([0.82, 0.55, 0.55]) * rng.uniform(0.85, 1.05)
        hair = rng.choice(
            [[30, 22, 18], [70, 45, 25], [140, 95, 50], [200, 170, 110], [110, 110, 110]]
        ) * rng.uniform(0.8, 1.2)
        iris = rng.choice([[70, 45, 25], [60, 100, 140], [60, 110, 70], [40, 30, 25]])
        bg1 = rng.uniform(20, 235, 3)
        bg2 = np.clip(bg1 + rng.uniform(-80, 80, 3), 0, 255)
        return Identity(
            skin=tuple(np.clip(skin, 0, 255)),
            lip=tuple(np.clip(lip, 0, 255)),
            hair=tuple(np.clip(hair, 0, 255)),
            iris=tuple(float(v) for v in iris),
            background=(tuple(bg1), tuple(bg2)),
            background_angle=float(rng.uniform(0, np.pi)),
            face_w=float(rng.uniform(1.05, 1.3)),
            face_h=float(rng.uniform(1.45, 1.75)),
            face_cy=float(rng.uniform(0.35, 0.5)),
            eye_w=float(rng.uniform(0.17, 0.23)),
            eye_h=float(rng.uniform(0.07, 0.1)),
            brow=float(rng.uniform(0.04, 0.08)),
            brow_tilt=float(rng.uniform(-0.06, 0.06)),
            nose=float(rng.uniform(0.85, 1.15)),
            mouth_w=float(rng.uniform(0.36, 0.46)),
            lip_up=float(rng.uniform(0.05, 0.08)),
            lip_lo=float(rng.uniform(0.07, 0.11)),
            hair_style=int(rng.integers(0, 4)),
            hair_len=float(rng.uniform(0.3, 1.0)),
            beard=bool(rng.random() < 0.15),
            glasses=bool(rng.random() < 0.2),
            light=float(rng.uniform(0.0, 0.25)),
            light_angle=float(rng.uniform(0, 2 * np.pi)),
            scale=float(rng.uniform(0.2, 0.27)),
            centre=(float(rng.uniform(0.42, 0.58)), float(rng.uniform(0.36, 0.46))),
        )


def anchors(ident: Identity) -> np.ndarray:
    """(5, 2) landmark positions in face units: eyes, nose tip, relaxed mouth corners."""
    w = ident.mouth_w
    return np.array(
        [[-0.5, EYE_Y], [0.5, EYE_Y], [0.0, NOSE_Y * ident.nose], [-w, MOUTH_Y], [w, MOUTH_Y]]
    )


def head_poses(rng: np.random.Generator, count: int, ident: Identity, size: int) -> np.ndarray:
    """(T, 2, 3) face-units -> pixel similarities: slow drift of position, tilt and distance."""
    t = np.arange(count)

    def wander(amplitude: float) -> np.ndarray:
        # Sum of a few slow sinusoids with random phases: smooth, bounded head motion.
        out = np.zeros(count)
        for _ in range(3):
            period = rng.uniform(40, 160)  # frames
            out += np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
        return amplitude * out / 3

    scale = ident.scale * size * (1 + wander(0.05))
    angle = wander(0.08) + rng.uniform(-0.05, 0.05)
    cx = (ident.centre[0] + wander(0.03)) * size
    cy = (ident.centre[1] + wander(0.025)) * size
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    return np.stack([np.stack([cos, -sin, cx], 1), np.stack([sin, cos, cy], 1)], 1)


def _apply(pose: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ pose[:, :2].T + pose[:, 2]


def _poly(img, pose, pts, color) -> None:
    px = np.round(_apply(pose, np.asarray(pts, np.float64)) * ONE).astype(np.int32)
    cv2.fillPoly(img, [px], tuple(float(np.clip(c, 0, 255)) for c in color), cv2.LINE_AA, SHIFT)


def _ellipse_pts(cx, cy, rx, ry, a0=0.0, a1=2 * np.pi, n=48) -> np.ndarray:
    a = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


def background(ident: Identity, size: int) -> np.ndarray:
    """(S, S, 3) uint8 linear gradient between the identity's two background colours."""
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    u = np.cos(ident.background_angle) * xx + np.sin(ident.background_angle) * yy
    u = (u - u.min()) / max(np.ptp(u), 1e-6)
    c1, c2 = np.array(ident.background[0]), np.array(ident.background[1])
    return np.round(c1 * (1 - u[..., None]) + c2 * u[..., None]).astype(np.uint8)


def mouth_shape(ident: Identity, open_: float, spread: float, round_: float):
    """Outer lip polygon, inner opening polygon and upper-teeth polygon (face units)."""
    w = ident.mouth_w * (0.82 + 0.32 * spread - 0.3 * round_)
    h = 0.42 * open_  # full height of the opening
    x = np.linspace(-1, 1, 25)
    bulge = np.sqrt(np.clip(1 - x**2, 0, 1))  # 0 at the corners, 1 in the middle
    cupid = 1 - 0.25 * np.exp(-((x / 0.18) ** 2))  # the dip of the upper lip
    pucker = 1 + 0.6 * round_
    up_in = MOUTH_Y - 0.5 * h * bulge
    lo_in = MOUTH_Y + 0.5 * h * bulge
    up_out = up_in - ident.lip_up * pucker * (0.35 + 0.65 * bulge) * cupid
    lo_out = lo_in + ident.lip_lo * pucker * (0.35 + 0.65 * bulge)
    xs = w * x
    outer = np.concatenate([np.stack([xs, up_out], 1), np.stack([xs[::-1], lo_out[::-1]], 1)])
    inner_w = xs * (0.88 - 0.1 * round_)
    inner = np.concatenate(
        [np.stack([inner_w, up_in], 1), np.stack([inner_w[::-1], lo_in[::-1]], 1)]
    )
    teeth_lo = np.minimum(lo_in, up_in + 0.09)
    teeth = np.concatenate(
        [np.stack([inner_w * 0.8, up_in], 1), np.stack([inner_w[::-1] * 0.8, teeth_lo[::-1]], 1)]
    )
    return outer, inner, teeth, h


def render_frame(
    ident: Identity,
    pose: np.ndarray,
    mouth: np.ndarray,
    blink: float,
    gaze: tuple[float, float],
    base: np.ndarray,
) -> np.ndarray:
    """One RGB frame (float32, 0-255) of the identity at ``pose`` with mouth parameters
    ``mouth`` (3,) and eyelids ``blink`` in [0, 1] (1 = closed)."""
    img = base.copy()
    open_, spread, round_ = (float(v) for v in mouth)
    skin = np.array(ident.skin)
    jaw = 0.22 * open_  # chin drop

    # Hair behind the head, neck, then the head.
    if ident.hair_style == 1:
        back = _ellipse_pts(0, ident.face_cy + 0.2, ident.face_w * 1.18, ident.face_h * 1.08)
        back[:, 1] = np.minimum(back[:, 1], ident.face_cy + 0.6 + 1.4 * ident.hair_len)
        _poly(img, pose, back, ident.hair)
    _poly(img, pose, [[-0.62, 1.6], [0.62, 1.6], [0.75, 4.0], [-0.75, 4.0]], skin * 0.85)
    head = _ellipse_pts(0, ident.face_cy, ident.face_w, ident.face_h)
    lower = head[:, 1] > ident.face_cy
    head[lower, 1] += jaw * (head[lower, 1] - ident.face_cy) / ident.face_h
    _poly(img, pose, head, skin)
    for side in (-1, 1):  # ears
        _poly(img, pose, _ellipse_pts(side * ident.face_w * 0.98, 0.3, 0.13, 0.26), skin * 0.93)
    if ident.beard:
        chin = _ellipse_pts(0, ident.face_cy, ident.face_w * 0.98, ident.face_h + jaw)
        chin = chin[chin[:, 1] > MOUTH_Y - 0.2]
        _poly(img, pose, chin, np.array(ident.hair) * 0.9 + skin * 0.1)
        _poly(img, pose, _ellipse_pts(0, MOUTH_Y + 0.1 * open_, 0.55, 0.3 + 0.15 * open_), skin)

    # Hair on top.
    top = ident.face_cy - ident.face_h
    if ident.hair_style in (0, 1, 3):
        cap = _ellipse_pts(
            0, ident.face_cy, ident.face_w * 1.06, ident.face_h * 1.04, np.pi, 2 * np.pi
        )
        line = -0.55 - 0.25 * ident.hair_len if ident.hair_style != 3 else -0.35
        cap = np.concatenate([cap, [[ident.face_w * 0.9, line], [-ident.face_w * 0.9, line]]])
        _poly(img, pose, cap, ident.hair)
    else:
        for side in (-1, 1):
            _poly(
                img,
                pose,
                _ellipse_pts(side * ident.face_w * 0.9, -0.2, 0.2, 0.45),
                ident.hair,
            )
        _poly(img, pose, _ellipse_pts(0, top + 0.15, 0.6, 0.12), skin * 1.04)

    # Eyes, brows.
    for side in (-1, 1):
        cx = side * 0.5
        _poly(img, pose, _ellipse_pts(cx, EYE_Y, ident.eye_w, ident.eye_h), (245, 245, 240))
        ix, iy = cx + gaze[0] * ident.eye_w * 0.3, EYE_Y + gaze[1] * ident.eye_h * 0.2
        _poly(img, pose, _ellipse_pts(ix, iy, ident.eye_h * 0.95, ident.eye_h * 0.95), ident.iris)
        _poly(img, pose, _ellipse_pts(ix, iy, ident.eye_h * 0.45, ident.eye_h * 0.45), (15, 12, 12))
        lid = _ellipse_pts(cx, EYE_Y, ident.eye_w * 1.08, ident.eye_h * 1.3, np.pi, 2 * np.pi)
        lid_low = EYE_Y - ident.eye_h * 1.3 + 2.6 * ident.eye_h * (0.08 + 0.92 * blink)
        lid = np.concatenate(
            [lid, [[cx + ident.eye_w * 1.08, lid_low], [cx - ident.eye_w * 1.08, lid_low]]]
        )
        lid[:, 1] = np.minimum(lid[:, 1], lid_low)
        _poly(img, pose, lid, skin * 0.97)
        by = EYE_Y - 0.28
        tilt = side * ident.brow_tilt
        brow = [
            [cx - 0.24, by + 0.03 - tilt],
            [cx, by - 0.02],
            [cx + 0.24, by + 0.03 + tilt],
            [cx + 0.24, by + 0.03 + tilt + ident.brow],
            [cx, by - 0.02 + ident.brow],
            [cx - 0.24, by + 0.03 - tilt + ident.brow],
        ]
        _poly(img, pose, brow, np.array(ident.hair) * 0.8)
    if ident.glasses:
        for side in (-1, 1):
            ring = _ellipse_pts(side * 0.5, EYE_Y + 0.02, 0.3, 0.22)
            px = np.round(_apply(pose, ring) * ONE).astype(np.int32)
            thick = max(1, int(round(np.linalg.norm(pose[:, 0]) * 0.035)))
            cv2.polylines(img, [px], True, (30, 30, 35), thick, cv2.LINE_AA, SHIFT)

    # Nose: a soft shadow and nostrils.
    n = ident.nose
    _poly(
        img,
        pose,
        [[-0.04, 0.15], [0.04, 0.15], [0.14, NOSE_Y * n], [-0.14, NOSE_Y * n]],
        skin * 0.93,
    )
    for side in (-1, 1):
        _poly(img, pose, _ellipse_pts(side * 0.08, NOSE_Y * n - 0.01, 0.045, 0.025), skin * 0.55)

    # Mouth.
    outer, inner, teeth, h = mouth_shape(ident, open_, spread, round_)
    _poly(img, pose, outer, ident.lip)
    if h > 0.004:
        _poly(img, pose, inner, (45, 18, 22))
        if h > 0.03:
            tongue = _ellipse_pts(
                0, MOUTH_Y + 0.5 * h, 0.5 * ident.mouth_w, 0.35 * h, np.pi, 2 * np.pi
            )
            _poly(img, pose, tongue, (170, 80, 85))
        _poly(img, pose, teeth, (235, 232, 220))
    else:
        line = np.stack([outer[:25, 0], np.full(25, MOUTH_Y)], 1)
        px = np.round(_apply(pose, line) * ONE).astype(np.int32)
        cv2.polylines(img, [px], False, tuple(np.array(ident.lip) * 0.55), 1, cv2.LINE_AA, SHIFT)

    # Side lighting over everything but the background would need a mask; a global ramp is
    # enough to vary shading between identities.
    out = img.astype(np.float32)
    if ident.light > 0:
        size = img.shape[0]
        yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
        ramp = np.cos(ident.light_angle) * xx + np.sin(ident.light_angle) * yy
        out *= (1 + ident.light * ramp)[..., None].astype(np.float32)
    return out


__all__ = ["Identity", "anchors", "background", "head_poses", "mouth_shape", "render_frame"]
