"""LiveKit avatar worker: joins a room when an agent dispatches it and publishes its face,
lip-synced to the agent's speech (video + the agent's own audio).

Pair it with ``livekit_agent.py``. Both are LiveKit agent workers on one LiveKit server
(local: ``livekit-server --dev``; or LiveKit Cloud):

    pip install 'lipforcing[livekit]'
    export LIVEKIT_URL=ws://localhost:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret
    python examples/livekit_avatar.py start    # this worker (agent name "lipforcing-avatar")
    python examples/livekit_agent.py start     # the voice agent; dispatches this worker

Settings (environment variables):
    LIPFORCING_AVATAR      a personal avatar (NAME.avatar from `lipforcing avatar create`): its
                           student, codec and own footage (LIPFORCING_VIDEO replaces the footage)
    LIPFORCING_VIDEO       the face: a video or image file (default: the built-in SynthTalk face)
    LIPFORCING_CHECKPOINT  student checkpoint (default: the built-in tiny one, CPU real time)
    LIPFORCING_DEVICE      torch device (default: cpu)
    LIPFORCING_SAMPLE_RATE audio rate published, Hz (default 24000); the agent must send the
                           same: LipSyncAvatar(sample_rate=...) on its side

The worker registers under ``AVATAR_AGENT_NAME``, so it joins only rooms it is explicitly
dispatched to; ``accept_avatar_job`` makes it join under the identity the agent chose and
publish on the agent's behalf (frontends then show its video as the agent's).
"""

from __future__ import annotations

import asyncio
import json
import os

from livekit.agents import AgentServer, JobContext, JobProcess, cli

from lipforcing.streaming.integrations.livekit import (
    AVATAR_AGENT_NAME,
    SAMPLE_RATE,
    accept_avatar_job,
    start_avatar,
)


def load(proc: JobProcess) -> None:
    """Once per worker process: the model and the face (tracked once), kept for every job."""
    from lipforcing.avatar import stream_inputs

    pipeline, source = stream_inputs(
        os.environ.get("LIPFORCING_AVATAR"),
        checkpoint=os.environ.get("LIPFORCING_CHECKPOINT"),
        video=os.environ.get("LIPFORCING_VIDEO"),
        device=os.environ.get("LIPFORCING_DEVICE", "cpu"),
    )
    proc.userdata["pipeline"], proc.userdata["source"] = pipeline, source


server = AgentServer(setup_fnc=load)


@server.rtc_session(agent_name=AVATAR_AGENT_NAME, on_request=accept_avatar_job)
async def avatar(ctx: JobContext) -> None:
    await ctx.connect()
    rate = int(os.environ.get("LIPFORCING_SAMPLE_RATE", SAMPLE_RATE))
    data = ctx.proc.userdata
    runner = await start_avatar(ctx.room, data["pipeline"], data["source"], sample_rate=rate)
    ctx.add_shutdown_callback(runner.aclose)

    # leave with the agent that dispatched us
    agent = json.loads(ctx.job.metadata or "{}").get("publish_on_behalf")
    agent_left = asyncio.Event()

    def on_left(participant) -> None:
        if agent is None or participant.identity == agent:
            agent_left.set()

    ctx.room.on("participant_disconnected", on_left)
    await agent_left.wait()
    ctx.shutdown(reason="the agent left")


if __name__ == "__main__":
    cli.run_app(server)
