// The stats panel. Server figures come from the server's measurements (its stats messages);
// the client figures are measured here: frames shown per second and bytes received per second.
const ms = (v) => (v == null ? "–" : `${(v * 1000).toFixed(0)} ms`);

export class StatsPanel {
  constructor(root) {
    this.root = root;
    this.client = { frames: 0, bytes: 0, t: performance.now() };
  }

  set(id, text) {
    const el = this.root.querySelector(`#${id}`);
    if (el) el.textContent = text;
  }

  // What the session runs with: the face driven (as the server reports it) and the gate.
  session(s) {
    if (s.face === undefined) return;
    this.set("s-face", `${s.face} · gate ${s.silence_gate ? "on" : "off"}`);
  }

  server(s) {
    this.session(s);
    this.set("s-ttff", ms(s.ttff_s));
    this.set("s-fps", s.fps == null ? "–" : s.fps.toFixed(1));
    this.set("s-gen", s.gen_fps == null ? "–" : s.gen_fps.toFixed(1));
    this.set("s-delay", s.queue_delay_mean_s == null ? "–" :
      `${ms(s.queue_delay_mean_s)} (max ${ms(s.queue_delay_max_s)})`);
    this.set("s-frames", String(s.frames_out));
    this.set("s-speech", String(s.speech_frames_out));
    this.set("s-late", `${s.late_frames} / ${s.dropped_frames}`);
    this.set("s-pending", `${s.audio_pending_s.toFixed(2)} s`);
  }

  // Called about once a second with running totals measured in the page.
  measured(framesShown, bytesReceived) {
    const now = performance.now();
    const dt = (now - this.client.t) / 1000;
    if (dt < 0.5) return;
    const fps = (framesShown - this.client.frames) / dt;
    const kbps = (8 * (bytesReceived - this.client.bytes)) / dt / 1000;
    this.client = { frames: framesShown, bytes: bytesReceived, t: now };
    this.set("c-fps", fps.toFixed(1));
    this.set("c-rate", kbps >= 1000 ? `${(kbps / 1000).toFixed(2)} Mbit/s` : `${kbps.toFixed(0)} kbit/s`);
  }

  reset() {
    for (const dd of this.root.querySelectorAll("dd")) dd.textContent = "–";
    this.client = { frames: 0, bytes: 0, t: performance.now() };
  }
}
