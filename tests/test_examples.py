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
