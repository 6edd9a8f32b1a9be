"""The examples in examples/ load against the installed libraries and build what they claim.

They need a LiveKit server (the LiveKit pair) or a WebRTC peer (the Pipecat bot) to run end to
end; what they are built from (LipSyncAvatar, start_avatar, LipSyncProcessor behind a real
output transport) is tested in tests/streaming/test_streaming_integrations.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_livekit_pair():
    pytest.importorskip("livekit.agents")
    from livekit.agents import AgentServer

    from lipforcing.streaming.integrations.livekit import AVATAR_AGENT_NAME, SAMPLE_RATE

    avatar, agent = load("livekit_avatar"), load("livekit_agent")
    assert isinstance(avatar.server, AgentServer) and isinstance(agent.server, AgentServer)
    assert avatar.server._agent_name == AVATAR_AGENT_NAME  # explicit dispatch only
    assert agent.server._agent_name == ""  # the voice agent joins rooms automatically
    chunks = agent.utterance(920_002)
    assert all(c.dtype == np.int16 for c in chunks)
    assert len(chunks[0]) == SAMPLE_RATE * agent.FRAME_MS // 1000
    assert abs(sum(map(len, chunks)) / SAMPLE_RATE - agent.SPEECH_SECONDS) < 0.05


def test_pipecat_bot():
    pytest.importorskip("pipecat")
    from pipecat.frames.frames import TTSAudioRawFrame, TTSStartedFrame, TTSStoppedFrame

    bot = load("pipecat_pipeline")
    frames = bot.utterance(920_002)
    assert isinstance(frames[0], TTSStartedFrame) and isinstance(frames[-1], TTSStoppedFrame)
    assert all(isinstance(f, TTSAudioRawFrame) for f in frames[1:-1])
    params = bot.transport_params((256, 320), 25.0)
    assert (params.video_out_width, params.video_out_height) == (320, 256)
    assert params.video_out_enabled and not params.video_out_is_live
    assert params.audio_out_sample_rate == frames[1].sample_rate


@pytest.mark.slow
def test_pipecat_bot_streams_face_and_speech_over_webrtc():
    """The example bot end to end: an aiortc peer (silent microphone) connects through Pipecat's
    SmallWebRTC transport and receives the face video and the bot's speech."""
    pytest.importorskip("pipecat")
    pytest.importorskip("aiortc")
    import asyncio

    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
    from pipecat.runner.types import SmallWebRTCRunnerArguments
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

    bot = load("pipecat_pipeline")
    pipeline, source = bot.model()
    received = {"video": [], "audio": []}

    async def consume(track) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                received["video"].append((frame.height, frame.width))
            else:
                received["audio"].append(np.abs(frame.to_ndarray()).max())

    async def main() -> None:
        client = RTCPeerConnection()
        client.addTrack(AudioStreamTrack())  # a silent microphone
        client.addTransceiver("video", direction="recvonly")
        client.on("track", lambda track: asyncio.ensure_future(consume(track)))
        await client.setLocalDescription(await client.createOffer())
        connection = SmallWebRTCConnection()
        offer = client.localDescription
        await connection.initialize(sdp=offer.sdp, type=offer.type)
        answer = connection.get_answer()
        await client.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        args = SmallWebRTCRunnerArguments(webrtc_connection=connection)
        args.handle_sigint = False
        running = asyncio.create_task(bot.bot(args))
        deadline = asyncio.get_running_loop().time() + 120
        while sum(a > 1000 for a in received["audio"]) < 20:  # 20 loud 20 ms packets
            assert asyncio.get_running_loop().time() < deadline, "no speech arrived"
            await asyncio.sleep(0.5)
        await client.close()
        await asyncio.wait_for(running, 30)

    asyncio.run(main())
    assert len(received["video"]) > 25
    assert set(received["video"]) == {source.frame_size}
