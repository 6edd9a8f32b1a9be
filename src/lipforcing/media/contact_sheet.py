"""A contact sheet to check face tracking by eye.

Rows (one column per sampled frame): the frame with its detected 5 points (green; red border
when no face was found), the aligned crop, the crop with the mouth mask tinted, and the frame
after pasting back the tinted crop (shows where and how smoothly the generated region lands).
"""

from __future__ import annotations

import cv2
import numpy as np

from lipforcing.config import MediaConfig
from lipforcing.media.align import warp_to_crop
from lipforcing.media.composite import paste_back
from lipforcing.media.faces import FaceTrack
from lipforcing.media.mask import mouth_mask

ROWS = ("frame + landmarks", "aligned crop", "mouth mask", "pasted back")
LABEL_WIDTH = 190  # px of the left column holding the row names


def _tint(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    green = np.array([0, 255, 0], np.float32)
    out = crop.astype(np.float32)
    out = out + 0.45 * mask[..., None] * (green - out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _fit(image: np.ndarray, tile: int) -> np.ndarray:
    """Letterbox ``image`` into a tile x tile square."""
    h, w = image.shape[:2]
    s = tile / max(h, w)
    small = cv2.resize(
        image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )
    out = np.full((tile, tile, 3), 32, np.uint8)
    y, x = (tile - small.shape[0]) // 2, (tile - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def _annotate(frame: np.ndarray, points: np.ndarray, found: bool) -> np.ndarray:
    out = frame.copy()
    r = max(2, round(max(frame.shape[:2]) / 150))
    if found:
        for x, y in points:
            cv2.circle(out, (int(round(x)), int(round(y))), r, (0, 255, 0), -1)
    else:
        cv2.rectangle(out, (0, 0), (out.shape[1] - 1, out.shape[0] - 1), (255, 0, 0), 3 * r)
    return out


def contact_sheet(
    frames: np.ndarray, track: FaceTrack, cfg: MediaConfig, columns: int = 8, tile: int = 160
) -> np.ndarray:
    """(H, W, 3) uint8 RGB sheet of ``columns`` evenly spaced frames."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(columns, len(frames))).round().astype(int))
    crops = warp_to_crop(frames[idx], track.transforms[idx], cfg.crop_size)
    mask = mouth_mask(cfg)
    rows = [[] for _ in ROWS]
    for k, i in enumerate(idx):
        tinted = _tint(crops[k], mask)
        rows[0].append(_annotate(frames[i], track.landmarks[i], bool(track.found[i])))
        rows[1].append(crops[k])
        rows[2].append(tinted)
        rows[3].append(paste_back(frames[i], tinted, track.transforms[i], cfg))
    text = f"frames {', '.join(map(str, idx))}   face found {100 * track.found_ratio:.1f}%"
    return labelled_grid(rows, ROWS, tile, text)


def labelled_grid(
    rows: list[list[np.ndarray]], names: list[str] | tuple[str, ...], tile: int, header: str
) -> np.ndarray:
    """(H, W, 3) uint8 sheet: one row of letterboxed ``tile`` x ``tile`` images per name, the
    names in a left column, ``header`` above."""
    grid = [np.concatenate([_fit(im, tile) for im in row], 1) for row in rows]
    sheet = np.concatenate(grid, 0)
    labels = np.full((sheet.shape[0], LABEL_WIDTH, 3), 255, np.uint8)
    for r, name in enumerate(names):
        cv2.putText(
            labels,
            name,
            (8, r * tile + tile // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.55,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    top = np.full((28, LABEL_WIDTH + sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(top, header, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([top, np.concatenate([labels, sheet], 1)], 0)


def write_png(path, image: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG."""
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"cannot write {path}")


__all__ = ["contact_sheet", "labelled_grid", "write_png"]
