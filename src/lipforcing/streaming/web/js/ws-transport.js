// The WebSocket transport: int16 PCM up, JPEG frames (each with the audio it plays) down.
// Each frame is drawn when its audio starts playing, so picture and sound stay in step.
// Protocol: lipforcing/streaming/server/__init__.py.
import { token } from "./api.js";
import { tapPcm, toInt16 } from "./audio-input.js";

const JITTER_S = 0.06;  // playout buffer after a (re)start, seconds

export class WebSocketTransport {
  constructor({ stage, stats, onStatus, onEnd }) {
    Object.assign(this, { stage, stats, onStatus, onEnd });
    this.bytes = 0;
  }

  async start(sourceId, input, options = {}) {
    this.ctx = new AudioContext();
    await this.ctx.resume().catch(() => {});
    this.playTime = 0;
    this.stage.showCanvas();
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws`);
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => ws.send(JSON.stringify({
      type: "start", source: sourceId, realtime: true, sample_rate: this.ctx.sampleRate,
      ...options, token: token() || undefined,
    }));
    ws.onmessage = (ev) => this.receive(ev, input);
    ws.onclose = (ev) => this.closed(ev);
  }

  async receive(ev, input) {
    if (typeof ev.data !== "string") {
      this.bytes += ev.data.byteLength;
      this.playFrame(ev.data);
      return;
    }
    this.bytes += ev.data.length;
    const msg = JSON.parse(ev.data);
    if (msg.type === "ready") {
      this.rate = msg.sample_rate;
      this.stats.session(msg);
      this.onStatus("streaming (WebSocket)");
      this.untap = await tapPcm(this.ctx, input.stream, (pcm) => this.send(toInt16(pcm).buffer));
      input.ended.then(() => this.control("end_segment"));
    } else if (msg.type === "stats") this.stats.server(msg);
    else if (msg.type === "done") { this.stats.server(msg.stats); this.onStatus("done"); }
    else if (msg.type === "error") this.onStatus(msg.message, true);
  }

  playFrame(buf) {
    const view = new DataView(buf);
    const n = view.getUint32(0, true);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
    const pcm = new Int16Array(buf.slice(4 + n, 4 + n + header.audio_bytes));
    const jpeg = new Blob([new Uint8Array(buf, 4 + n + header.audio_bytes)], { type: "image/jpeg" });
    const audio = this.ctx.createBuffer(1, pcm.length, this.rate);
    const ch = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = this.ctx.createBufferSource();
    src.buffer = audio;
    src.connect(this.ctx.destination);
    const now = this.ctx.currentTime;
    if (this.playTime < now + 0.02) this.playTime = now + JITTER_S;
    src.start(this.playTime);
    const delayMs = Math.max(0, (this.playTime - now) * 1000);
    this.playTime += pcm.length / this.rate;
    createImageBitmap(jpeg).then((bmp) => setTimeout(() => this.stage.draw(bmp), delayMs));
  }

  send(data) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(data);
  }

  control(type) {
    this.send(JSON.stringify({ type }));
  }

  interrupt() {
    this.control("clear");
    this.playTime = 0;
  }

  stop() {
    this.control("close");
  }

  closed(ev) {
    if (this.untap) this.untap();
    if (this.ctx) this.ctx.close();
    this.onEnd(ev.code === 1000 ? null : `connection closed (${ev.code}) ${ev.reason || ""}`);
  }
}
