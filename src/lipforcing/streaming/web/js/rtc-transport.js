// The WebRTC transport: the input audio track goes up, the lip-synced video and the audio it
// plays come down on the same peer connection; the browser keeps them in sync from their RTP
// timestamps. Control messages (clear, end_segment, close) and the server's stats travel on a
// data channel. Signalling: POST /offer {sdp, type, source, ...options} -> {sdp, type}.
import { authHeaders } from "./api.js";

export class RtcTransport {
  constructor({ stage, stats, onStatus, onEnd }) {
    Object.assign(this, { stage, stats, onStatus, onEnd });
    this.bytes = 0;
    this.done = false;
  }

  async start(sourceId, input, options = {}) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    this.channel = pc.createDataChannel("control");
    this.channel.onmessage = (ev) => this.receive(JSON.parse(ev.data));
    for (const track of input.stream.getAudioTracks()) pc.addTrack(track, input.stream);
    pc.addTransceiver("video", { direction: "recvonly" });
    const remote = new MediaStream();
    pc.ontrack = (ev) => {
      remote.addTrack(ev.track);
      if (ev.track.kind === "video") this.stage.showVideo(remote);
    };
    pc.onconnectionstatechange = () => {
      if (["failed", "closed", "disconnected"].includes(pc.connectionState)) this.finish();
    };
    await pc.setLocalDescription(await pc.createOffer());
    const response = await fetch("/offer", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({
        sdp: pc.localDescription.sdp, type: "offer", source: sourceId, ...options,
      }),
    });
    const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok) {
      this.finish(answer.error || `offer refused (${response.status})`);
      return;
    }
    await pc.setRemoteDescription(answer);
    this.onStatus("streaming (WebRTC)");
    input.ended.then(() => this.control("end_segment"));
    this.meter = setInterval(() => this.measure(), 1000);
  }

  receive(msg) {
    if (msg.type === "stats") this.stats.server(msg);
    else if (msg.type === "done") { this.stats.server(msg.stats); this.onStatus("done"); this.finish(); }
    else if (msg.type === "error") this.onStatus(msg.message, true);
  }

  // Bytes received on the connection, for the page's bitrate figure (measured by the browser).
  async measure() {
    if (!this.pc) return;
    const report = await this.pc.getStats();
    let bytes = 0;
    report.forEach((s) => { if (s.type === "transport") bytes += s.bytesReceived || 0; });
    this.bytes = bytes;
  }

  control(type) {
    if (this.channel && this.channel.readyState === "open") this.channel.send(JSON.stringify({ type }));
  }

  interrupt() {
    this.control("clear");
  }

  stop() {
    this.control("close");
  }

  finish(error = null) {
    if (this.done) return;
    this.done = true;
    clearInterval(this.meter);
    if (this.pc) this.pc.close();
    this.onEnd(error);
  }
}
