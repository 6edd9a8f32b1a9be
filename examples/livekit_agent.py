"""LiveKit voice agent with a lip-synced face: the agent side of ``livekit_avatar.py``.

``LipSyncAvatar`` dispatches the avatar worker to the room and sends the agent's speech to it
(``DataStreamAudioOutput``, resampled to ``sample_rate``); the avatar publishes the face video
and the agent's own audio, in sync, and tells the agent how much of each utterance was played
(so interruptions cut the transcript at the right place).

So that the pair runs with nothing but a LiveKit server, this agent speaks built-in SynthTalk
speech (formant speech, no words) when a user joins and then every few seconds. For a real
conversation give ``AgentSession`` your STT / LLM / TTS plugins (see ``build_session``) and drop
``speak_samples``; nothing else changes.

    pip install 'lipforcing[livekit]'
    export LIVEKIT_URL=ws://localhost:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret
    python examples/livekit_avatar.py start
    python examples/livekit_agent.py start
    # then join the room from a LiveKit frontend (e.g. the agents playground)

Settings that must match the avatar worker: ``sample_rate`` (LIPFORCING_SAMPLE_RATE there,
default 24000), the avatar identity and the worker's agent name (the defaults of both sides).
"""

from __future__ import annotations

import asyncio

import numpy as np
from livekit import rtc
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli

from lipforcing.streaming.integrations.livekit import SAMPLE_RATE, LipSyncAvatar

SPEECH_SEEDS = (920_002, 920_003, 920_004)  # SynthTalk utterances the agent says in turn
SPEECH_SECONDS = 3.0
PAUSE_S = 4.0
FRAME_MS = 20


def build_session() -> AgentSession:
    # a real agent: AgentSession(stt=..., llm=..., tts=..., vad=...) with LiveKit plugins
    return AgentSession()


def utterance(seed: int, rate: int = SAMPLE_RATE):
    """A SynthTalk utterance as the 20 ms int16 frames a TTS would produce."""
    import soxr

    from lipforcing.media.synthtalk import render_clip

    clip = render_clip(seed, SPEECH_SECONDS, size=64)
    audio = soxr.resample(np.asarray(clip.audio, np.float32), clip.sample_rate, rate)
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
    step = rate * FRAME_MS // 1000
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


async def frames_of(chunks, rate: int = SAMPLE_RATE):
    for chunk in chunks:
        yield rtc.AudioFrame(chunk.tobytes(), rate, 1, len(chunk))


async def speak_samples(session: AgentSession) -> None:
    for turn in range(10**9):
        chunks = utterance(SPEECH_SEEDS[turn % len(SPEECH_SEEDS)])
        handle = session.say("(SynthTalk speech)", audio=frames_of(chunks))
        await handle.wait_for_playout()  # returns when the avatar reports playback_finished
        await asyncio.sleep(PAUSE_S)


server = AgentServer()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    session = build_session()
    avatar = LipSyncAvatar(sample_rate=SAMPLE_RATE)
    await avatar.start(session, room=ctx.room)  # dispatches the avatar, routes the audio to it
    await session.start(agent=Agent(instructions="You are a friendly face."), room=ctx.room)
    await speak_samples(session)


if __name__ == "__main__":
    cli.run_app(server)
