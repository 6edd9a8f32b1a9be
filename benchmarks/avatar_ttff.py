"""Time to first speech frame of the LiveKit avatar, cold (no warm-up) against warm.

Each run is a fresh process (one-off start-up costs are per process): load the shipped tiny
student and the built-in face, optionally run the warm-up ``start_avatar`` runs, start a real
``AvatarRunner`` (stub room, ``QueueAudioOutput`` as the agent), push 1 s of speech at once and
read the session's TTFF (first audio in -> first speech frame out). Runs alternate cold / warm;
the medians are printed with the commit.

    python benchmarks/avatar_ttff.py --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys

import numpy as np


def stub_room():
    from livekit import rtc

    class Publication:
        async def wait_for_subscription(self) -> None:
            pass

    class Participant:
        identity = "avatar"

        async def publish_track(self, track, options):
            return Publication()

    class Room(rtc.EventEmitter):
        name = "bench"

        def __init__(self) -> None:
            super().__init__()
            self.local_participant = Participant()

        def isconnected(self) -> bool:
            return True

    return Room()


async def one_run(warm: bool) -> dict:
    from livekit import rtc
    from livekit.agents.voice.avatar import AvatarRunner, QueueAudioOutput

    from lipforcing.media.synthtalk import render_clip
    from lipforcing.streaming.builtin import builtin_sample
    from lipforcing.streaming.integrations.livekit import LipSyncVideoGenerator, avatar_options
    from lipforcing.streaming.integrations.stream import warm_up
    from lipforcing.streaming.pipeline import Pipeline, shipped_checkpoint

    pipeline = Pipeline.load(shipped_checkpoint())
    source = builtin_sample(pipeline.preset).source
    if warm:
        await warm_up(pipeline, source)  # what start_avatar(warmup=True) runs
    agent = QueueAudioOutput(sample_rate=24_000)
    generator = LipSyncVideoGenerator.create(pipeline, source)
    runner = AvatarRunner(
        stub_room(), audio_recv=agent, video_gen=generator, options=avatar_options(pipeline, source)
    )
    await runner.start()
    clip = render_clip(920_002, 1.0, size=64)
    import soxr

    speech = soxr.resample(np.asarray(clip.audio, np.float32), clip.sample_rate, 24_000)
    pcm = np.round(np.clip(speech, -1, 1) * 32767).astype(np.int16)
    await agent.capture_frame(rtc.AudioFrame(pcm.tobytes(), 24_000, 1, len(pcm)))
    agent.flush()
    await agent.wait_for_playout()
    stats = generator.session.stats
    await runner.aclose()
    await generator.aclose()
    return {"warm": warm, "ttff_s": stats.ttff_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind")
    parser.add_argument("--one", choices=("cold", "warm"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(one_run(args.one == "warm"))))
        return
    results = {"cold": [], "warm": []}
    for _ in range(args.runs):
        for kind in results:
            out = subprocess.run(
                [sys.executable, __file__, "--one", kind],
                capture_output=True,
                text=True,
                check=True,
            )
            results[kind].append(json.loads(out.stdout.strip().splitlines()[-1])["ttff_s"])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    for kind, values in results.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"{kind}: TTFF median {statistics.median(values):.2f} s ({runs}), commit {commit}")


if __name__ == "__main__":
    main()
