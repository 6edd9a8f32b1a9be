"""Pipecat bot with a lip-synced face: speech -> LipSyncProcessor -> WebRTC (video + audio).

Runs locally with Pipecat's development runner and its prebuilt WebRTC page, no API keys:

    pip install 'lipforcing[pipecat]' 'pipecat-ai[webrtc,runner]'
    python examples/pipecat_pipeline.py          # then open http://localhost:7860/client

So that it needs no speech services, the bot says built-in SynthTalk speech (formant speech,
no words) as a TTS would emit it (``TTSStartedFrame``, ``TTSAudioRawFrame``s,
``TTSStoppedFrame``) when the page connects and then every few seconds. In a real bot the
pipeline is ``transport.input() -> STT -> LLM context -> LLM -> TTS -> LipSyncProcessor ->
transport.output()``: the processor goes right after the TTS, before the output transport.

Transport settings the processor needs (``transport_params``): audio out at the TTS rate,
video out enabled at the face's frame size and the preset's frame rate (25 fps), and
``video_out_is_live=False``: the processor's images travel in the transport's audio queue
(``sync_with_audio``), each shown once the audio before it has been sent.

Settings (environment variables): LIPFORCING_AVATAR (a personal avatar, NAME.avatar from
``lipforcing avatar create``: its student, codec and own footage), LIPFORCING_VIDEO (the face;
default the avatar's footage or the built-in SynthTalk face), LIPFORCING_CHECKPOINT (default
the built-in tiny student), LIPFORCING_DEVICE (cpu).
"""

from __future__ import annotations

import asyncio
import os
from functools import cache

import numpy as np
from pipecat.frames.frames import TTSAudioRawFrame, TTSStartedFrame, TTSStoppedFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.runner.types import SmallWebRTCRunnerArguments
from pipecat.transports.base_transport import TransportParams
from pipecat.workers.runner import WorkerRunner

from lipforcing.streaming.integrations.pipecat import LipSyncProcessor

TTS_RATE = 24_000  # Hz of the (stand-in) TTS audio and of the transport's audio out
SPEECH_SEEDS = (920_002, 920_003, 920_004)
SPEECH_SECONDS = 3.0
PAUSE_S = 4.0


@cache
def model():
    """The student and the face, loaded once per process."""
    from lipforcing.avatar import stream_inputs

    return stream_inputs(
        os.environ.get("LIPFORCING_AVATAR"),
        checkpoint=os.environ.get("LIPFORCING_CHECKPOINT"),
        video=os.environ.get("LIPFORCING_VIDEO"),
        device=os.environ.get("LIPFORCING_DEVICE", "cpu"),
    )


def transport_params(frame_size: tuple[int, int], fps: float) -> TransportParams:
    h, w = frame_size
    return TransportParams(
        audio_in_enabled=True,
        audio_out_enabled=True,
        audio_out_sample_rate=TTS_RATE,
        video_out_enabled=True,
        video_out_is_live=False,  # images are paced by the audio they follow
        video_out_width=w,
        video_out_height=h,
        video_out_framerate=round(fps),
    )


def utterance(seed: int) -> list:
    """A SynthTalk utterance as a TTS service would push it."""
    import soxr

    from lipforcing.media.synthtalk import render_clip

    clip = render_clip(seed, SPEECH_SECONDS, size=64)
    audio = soxr.resample(np.asarray(clip.audio, np.float32), clip.sample_rate, TTS_RATE)
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
    step = TTS_RATE // 10
    chunks = [pcm[i : i + step].tobytes() for i in range(0, len(pcm), step)]
    audio_frames = [TTSAudioRawFrame(c, sample_rate=TTS_RATE, num_channels=1) for c in chunks]
    return [TTSStartedFrame(), *audio_frames, TTSStoppedFrame()]


async def speak(worker: PipelineWorker) -> None:
    for turn in range(10**9):
        await worker.queue_frames(utterance(SPEECH_SEEDS[turn % len(SPEECH_SEEDS)]))
        await asyncio.sleep(SPEECH_SECONDS + PAUSE_S)


async def bot(runner_args: SmallWebRTCRunnerArguments) -> None:
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

    pipeline, source = model()
    params = transport_params(source.frame_size, pipeline.preset.media.fps)
    transport = SmallWebRTCTransport(webrtc_connection=runner_args.webrtc_connection, params=params)
    lipsync = LipSyncProcessor(pipeline, source)  # warms the model up when the pipeline starts
    worker = PipelineWorker(Pipeline([transport.input(), lipsync, transport.output()]))
    talking: list[asyncio.Task] = []

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client) -> None:
        talking.append(asyncio.create_task(speak(worker)))

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client) -> None:
        for task in talking:
            task.cancel()
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=runner_args.handle_sigint)
    await runner.add_workers(worker)
    await runner.run()


if __name__ == "__main__":
    from pipecat.runner.run import main

    main()
