"""The CPU recipe: SynthTalk -> shards -> latent cache -> teacher -> SyncNet -> Stage 1 ->
Stage 2 -> held-out evaluation. Each step writes its output under the run folder and is
skipped when that output exists.

Data: training clips use SynthTalk seeds [seed * 100_000, ...), held-out clips seeds
[seed * 100_000 + 50_000, ...): new identities and new speech (SynthTalk draws both per seed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from lipforcing.config import DMDConfig, PresetConfig, RecipeConfig, RewardConfig, with_overrides
from lipforcing.distill.distributed import print0
from lipforcing.distill.latents import encode_dataset, load_cache, make_batch, save_cache
from lipforcing.distill.stages import run_stage1, run_stage2, run_teacher

CLIP_SECONDS = 4.0  # 100 frames: 4 training windows of 21 frames (+ references) per clip


def shipped_codec() -> Path:
    return Path(__file__).resolve().parents[1] / "assets" / "tiny" / "codec.safetensors"


def make_shards(out: Path, preset: PresetConfig, clips: int, seed: int, name: str) -> Path:
    """Render SynthTalk clips and preprocess them into shards (skipped when done)."""
    from lipforcing.data.preprocess import preprocess
    from lipforcing.media.synthtalk import write_dataset

    raw, shards = out / "synthtalk" / name, out / "shards" / name
    if not (raw / "done").exists():
        write_dataset(raw, clips, CLIP_SECONDS, seed)
        (raw / "done").write_text("ok")
    if not (shards / "report.json").exists():
        preprocess([raw], shards, preset, progress=False)
    return shards


def latent_cache(out: Path, shards: Path, codec, frames: int, name: str, keep_video: bool) -> dict:
    from lipforcing.data.datasets import ShardDataset

    path = out / f"latents_{name}.pt"
    if not path.exists():
        ds = ShardDataset(shards, latent_frames=frames)
        save_cache(encode_dataset(ds, codec, keep_video=keep_video), path)
    return load_cache(path)


def load_syncnet(path: str | Path):
    """Our LipSyncNet from a checkpoint written by ``lipforcing train syncnet``."""
    from lipforcing.evaluation import syncnet as sn

    return sn.load_syncnet(Path(path))


def load_or_train_syncnet(out: Path, shards: Path, syncnet_path: str | None, quick: bool):
    """Our LipSyncNet: the given checkpoint, or trained here (library calls) on the training
    shards; None (with a message) when the evaluation part is not installed."""
    try:
        from lipforcing.evaluation import syncnet_train
    except ImportError as e:
        print0(f"syncnet: unavailable ({e}); Stage 2 runs without reward, no sync metrics")
        return None
    path = Path(syncnet_path) if syncnet_path else out / "syncnet" / "syncnet.safetensors"
    if not path.exists():
        train_syncnet(shards, path, syncnet_train.SyncNetTrainConfig(steps=200 if quick else 1500))
    return load_syncnet(path)


def train_syncnet(shards: Path, path: Path, cfg) -> None:
    """Train our LipSyncNet on every shard under ``shards`` and write it to ``path``."""
    from lipforcing.data.preprocess import find_shards, load_shard
    from lipforcing.evaluation import syncnet_train
    from lipforcing.evaluation.syncnet import LipSyncNet, LipSyncNetConfig, save_syncnet

    clips = [syncnet_train.Clip.from_arrays(load_shard(d)[0]) for d in find_shards([str(shards)])]
    torch.manual_seed(cfg.seed)
    model = LipSyncNet(LipSyncNetConfig(n_mels=clips[0].feats.shape[1] // 20))
    syncnet_train.train_syncnet(model, clips, cfg, path.parent / "state.pt")
    save_syncnet(model.eval(), path, {"steps": cfg.steps, "train_shards": len(clips)})


def sync_function(syncnet):
    if syncnet is None:
        return None
    from lipforcing.evaluation.sync import sync_confidence

    def fn(video, audio):
        return sync_confidence(syncnet, video, audio)

    return fn


@dataclass
class RecipeData:
    """The codec and the latent caches of the training and held-out windows."""

    codec: object
    train_shards: Path
    train: dict
    test: dict


def prepare_data(
    out: Path,
    preset: PresetConfig,
    frames: int,
    *,
    seed: int,
    codec_path: str | None,
    train_clips: int,
    test_clips: int,
) -> RecipeData:
    """1. SynthTalk shards (new identities and speech for the held-out set), latent caches."""
    from lipforcing.codecs import load_codec

    codec = load_codec(codec_path or shipped_codec())
    train_shards = make_shards(out, preset, train_clips, seed * 100_000, "train")
    test_shards = make_shards(out, preset, test_clips, seed * 100_000 + 50_000, "test")
    train = latent_cache(out, train_shards, codec, frames, "train", keep_video=False)
    test = latent_cache(out, test_shards, codec, frames, "test", keep_video=True)
    print0(f"data: {train['x0'].shape[0]} training windows, {test['x0'].shape[0]} held-out")
    return RecipeData(codec, train_shards, train, test)


def train_chain(rc: RecipeConfig, preset, data: RecipeData, out: Path, syncnet, seed: int):
    """2. Teacher, Stage 1 (from the teacher), Stage 2 (with the reward when a SyncNet is
    available); returns (teacher, stage-1 student, student) checkpoint paths."""
    teacher = run_teacher(data.train, preset, rc.teacher, out / "teacher", seed=seed)
    s1 = run_stage1(data.train, teacher, rc.stage1, out / "stage1", seed=seed)
    reward = stage2_reward(data, syncnet, rc.stage2)
    s2 = run_stage2(data.train, s1, teacher, rc.stage2, out / "stage2", seed=seed, reward_fn=reward)
    return teacher, s1, s2


def stage2_reward(data: RecipeData, syncnet, cfg: DMDConfig):
    """The reward of a Stage-2 config, checked against the cache before any step."""
    from lipforcing.distill.reward import check_reward_inputs, syncnet_reward

    if syncnet is None or cfg.reward is None:
        return None
    check_reward_inputs(syncnet, data.train)
    return syncnet_reward(data.codec, syncnet, cfg.reward)


class HeldOut:
    """3. Held-out evaluation: every model on the same windows and noise, in one process."""

    def __init__(self, data: RecipeData, preset: PresetConfig, syncnet) -> None:
        self.data, self.preset = data, preset
        n = data.test["x0"].shape[0]
        self.batch = make_batch(data.test, torch.arange(n), preset.model.audio_pack_frames)
        self.gt, self.mask = data.test["video"], data.test["mask"]
        self.sync = sync_function(syncnet)

    def score(self, generate, batch: dict | None = None) -> dict:
        from lipforcing.distill.evaluate import evaluate

        batch = batch or self.batch
        return evaluate(generate, self.data.codec, batch, self.gt, self.mask, self.sync)

    def student(self, model, preset, batch: dict | None = None) -> dict:
        from lipforcing.distill.evaluate import generate_student

        return self.score(lambda c, z: generate_student(model, c, z, preset), batch)

    def teacher(self, model, batch: dict | None = None) -> dict:
        from lipforcing.distill.evaluate import generate_teacher

        cfg = self.preset.schedule.teacher_cfg
        return self.score(lambda c, z: generate_teacher(model, c, z, self.preset, cfg), batch)

    def references(self) -> dict:
        """Codec reconstruction, ground truth, and ground truth against another clip's speech."""
        from lipforcing.distill.evaluate import mouth_metrics

        gtf = self.gt.float() / 127.5 - 1
        with torch.no_grad():
            recon = self.data.codec.decode(self.batch["x0"]).clamp(-1, 1)[:, :, : gtf.shape[2]]
        out = {"codec_reconstruction": mouth_metrics(recon, gtf, self.mask)}
        if self.sync is not None:
            audio = self.batch["audio"]
            out["ground_truth"] = {"sync": float(self.sync(gtf, audio).mean())}
            out["codec_reconstruction"]["sync"] = float(self.sync(recon, audio).mean())
            wrong = audio.roll(1, dims=0)  # another clip's speech: the unsynced reference
            out["ground_truth_wrong_audio"] = {"sync": float(self.sync(gtf, wrong).mean())}
        return out

    def dubbing_batch(self) -> dict:
        """Every window driven by another held-out clip's speech."""
        b = self.batch
        cond = dataclasses.replace(b["cond"], audio=b["cond"].audio.roll(1, dims=0))
        return {**b, "audio": b["audio"].roll(1, dims=0), "cond": cond}


def evaluate_chain(held: HeldOut, paths) -> dict:
    """Teacher, Stage-1 student and student on the held-out windows, plus the references."""
    from lipforcing.models.checkpoints import load_checkpoint

    teacher_path, s1, s2 = paths
    teacher, _ = load_checkpoint(teacher_path)
    student, spreset = load_checkpoint(s2)
    stage1_student, _ = load_checkpoint(s1)
    report = {
        "teacher": held.teacher(teacher),
        "student": held.student(student, spreset),
        "stage1_student": held.student(stage1_student, spreset),
        **held.references(),
    }
    report["speedup"] = report["student"]["fps"] / report["teacher"]["fps"]
    # The dubbing case: the unmodified source against the new speech is the baseline.
    if held.sync is not None and held.batch["x0"].shape[0] > 1:
        dub = held.dubbing_batch()
        report["dubbing"] = {
            "student": held.student(student, spreset, dub)["sync"],
            "teacher": held.teacher(teacher, dub)["sync"],
            "unmodified_source": report["ground_truth_wrong_audio"]["sync"],
        }
    return report


def ablation_arms(stage2: DMDConfig, steps: int) -> dict[str, DMDConfig]:
    """The paper's Table-2 Stage-2 arms: static CFG, Sync-Window CFG, Sync-Window + reward."""
    reward = stage2.reward or RewardConfig()
    arms = {
        "static_cfg": dataclasses.replace(stage2, guidance="static", reward=None),
        "sync_window": dataclasses.replace(stage2, guidance="window", reward=None),
        "sync_window_reward": dataclasses.replace(stage2, guidance="window", reward=reward),
    }
    return {k: with_overrides(v, steps=steps) for k, v in arms.items()}


def run_ablation(rc, data, held, syncnet, paths, report, out: Path, seed: int, steps: int) -> dict:
    """Train and score each arm from the same Stage-1 student; an arm whose config equals the
    main Stage-2 run (same data, seed and start) takes the main student's scores."""
    from lipforcing.models.checkpoints import load_checkpoint

    teacher_path, s1, _ = paths
    result: dict = {"steps": steps}
    for arm, cfg2 in ablation_arms(rc.stage2, steps).items():
        if cfg2 == rc.stage2:
            result[arm] = dict(report["student"])
            result.setdefault("same_as_main_run", []).append(arm)
            continue
        reward = stage2_reward(data, syncnet, cfg2)
        path = run_stage2(
            data.train, s1, teacher_path, cfg2, out / "ablation" / arm, seed=seed, reward_fn=reward
        )
        model, spreset = load_checkpoint(path)
        result[arm] = held.student(model, spreset)
    return result


def run_recipe(
    rc: RecipeConfig,
    preset: PresetConfig,
    out: Path,
    *,
    seed: int = 0,
    quick: bool = False,
    codec_path: str | None = None,
    syncnet_path: str | None = None,
    train_clips: int | None = None,
    test_clips: int = 8,
    ablation_steps: int = 0,
) -> dict:
    """Run every stage; returns the report dict.

    ``ablation_steps > 0`` also trains the three Stage-2 arms of the paper's Table 2 (static
    CFG, Sync-Window CFG, Sync-Window + reward) for that many student updates each from the
    same Stage-1 student and evaluates them on the held-out windows (``report["ablation"]``).
    """
    data = prepare_data(
        out,
        preset,
        rc.teacher.latent_frames,
        seed=seed,
        codec_path=codec_path,
        train_clips=train_clips or (8 if quick else 32),
        test_clips=test_clips,
    )
    syncnet = load_or_train_syncnet(out, data.train_shards, syncnet_path, quick)
    paths = train_chain(rc, preset, data, out, syncnet, seed)
    held = HeldOut(data, preset, syncnet)
    report = {
        "preset": preset.name,
        "recipe": dataclasses.asdict(rc),
        "held_out_windows": int(held.batch["x0"].shape[0]),
        **evaluate_chain(held, paths),
    }
    if ablation_steps > 0:
        report["ablation"] = run_ablation(
            rc, data, held, syncnet, paths, report, out, seed, ablation_steps
        )
    ship = Path(__file__).resolve().parents[1] / "assets" / "tiny"
    report["checkpoints"] = {
        "teacher": str(paths[0]),
        "student": str(paths[2]),
        "shipped_dir": str(ship),
    }
    return report


def report_markdown(report: dict) -> str:
    rows = ["| model | sync | mouth L1 | mouth PSNR | fps |", "|---|---|---|---|---|"]
    for key in ("teacher", "stage1_student", "student"):
        r = report.get(key) or {}
        rows.append(
            f"| {key} | {r.get('sync', float('nan')):.3f} | {r.get('mouth_l1', 0):.4f} "
            f"| {r.get('mouth_psnr', 0):.2f} | {r.get('fps', 0):.1f} |"
        )
    gt = report.get("ground_truth", {}).get("sync", float("nan"))
    recon = report["codec_reconstruction"].get("sync", float("nan"))
    abl = report.get("ablation")
    if abl:
        rows += [
            "",
            f"Stage-2 ablation ({abl['steps']} student updates per arm):",
            "",
            "| arm | sync | mouth L1 | mouth PSNR |",
            "|---|---|---|---|",
        ]
        for arm in ("static_cfg", "sync_window", "sync_window_reward"):
            r = abl[arm]
            name = f"{arm} (main run)" if arm in abl.get("same_as_main_run", ()) else arm
            rows.append(
                f"| {name} | {r.get('sync', float('nan')):.3f} | {r['mouth_l1']:.4f} "
                f"| {r['mouth_psnr']:.2f} |"
            )
    dub = report.get("dubbing")
    if dub:
        rows += [
            "",
            "Dubbing (each window driven by another clip's speech), sync:",
            f"student {dub['student']:.3f}, teacher {dub['teacher']:.3f}, "
            f"unmodified source {dub['unmodified_source']:.3f}",
        ]
    return "\n".join(
        [
            f"# Lip Forcing recipe ({report['preset']})",
            "",
            f"Held-out windows: {report['held_out_windows']}; ground-truth sync {gt:.3f}; "
            f"codec reconstruction sync {recon:.3f}; "
            f"speedup student/teacher {report['speedup']:.1f}x.",
            "",
            *rows,
            "",
        ]
    )
