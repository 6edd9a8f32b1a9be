// lipforcing live page: audio (microphone or a file) goes up a WebSocket as 16 kHz int16 PCM;
// lip-synced JPEG frames come back, each with the audio it plays, and are drawn on a canvas
// when that audio starts playing. Protocol: see lipforcing/streaming/server.py.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
const RATE = 16000;
const $ = (id) => document.getElementById(id);
const q = (extra = {}) => {
  const p = new URLSearchParams(extra);
  if (token) p.set("token", token);
  const s = p.toString();
  return s ? "?" + s : "";
};

let ws = null;
let feeder = null;       // stops the current audio input
let playCtx = null;      // output audio
let playTime = 0;        // when the next received audio starts, in playCtx time
const canvas = $("out");
const g = canvas.getContext("2d");

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

function setStreaming(on) {
  for (const id of ["mic", "file", "sample"]) $(id).disabled = on;
  $("interrupt").disabled = !on;
  $("stop").disabled = !on;
}

async function loadInfo() {
  const r = await fetch("/api/info" + q());
  if (!r.ok) { status(`server refused: ${r.status} (token?)`, true); return null; }
  const info = await r.json();
  $("model").textContent = `${info.preset} · ${info.checkpoint} · ${info.fps} fps`;
  const sel = $("source");
  sel.innerHTML = "";
  for (const s of info.sources) addSource(s);
  $("sample").disabled = !info.sample_audio;
  return info;
}

function addSource(s) {
  const opt = document.createElement("option");
  opt.value = s.source;
  opt.textContent = `${s.name} (${s.width}×${s.height}, ${s.frames} frames)`;
  $("source").appendChild(opt);
  $("source").value = s.source;
}

$("upload").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  status(`uploading ${file.name} and tracking the face…`);
  const r = await fetch("/api/sources" + q({ name: file.name }), { method: "POST", body: file });
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) { status(body.error || `upload failed (${r.status})`, true); return; }
  addSource(body);
  status(`source ready: ${body.name}`);
});

// ------------------------------------------------------------------ output side

function playFrame(buf) {
  const view = new DataView(buf);
  const n = view.getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  const pcm = new Int16Array(buf.slice(4 + n, 4 + n + header.audio_bytes));
  const jpeg = new Blob([new Uint8Array(buf, 4 + n + header.audio_bytes)], { type: "image/jpeg" });
  let delayMs = 0;
  if (playCtx && playCtx.state === "running") {
    const audio = playCtx.createBuffer(1, pcm.length, RATE);
    const ch = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = playCtx.createBufferSource();
    src.buffer = audio;
    src.connect(playCtx.destination);
    const now = playCtx.currentTime;
    if (playTime < now + 0.02) playTime = now + 0.06;  // (re)start with a small jitter buffer
    src.start(playTime);
    delayMs = Math.max(0, (playTime - now) * 1000);
    playTime += pcm.length / RATE;
  }
  createImageBitmap(jpeg).then((bmp) => {
    setTimeout(() => {
      if (canvas.width !== bmp.width || canvas.height !== bmp.height) {
        canvas.width = bmp.width; canvas.height = bmp.height;
      }
      g.drawImage(bmp, 0, 0);
      bmp.close();
    }, delayMs);
  });
}

function showStats(s) {
  const ms = (v) => (v == null ? "–" : `${(v * 1000).toFixed(0)} ms`);
  $("s-ttff").textContent = ms(s.ttff_s);
  $("s-fps").textContent = s.fps == null ? "–" : s.fps.toFixed(1);
  $("s-gen").textContent = s.gen_fps == null ? "–" : s.gen_fps.toFixed(1);
  $("s-delay").textContent = s.queue_delay_mean_s == null ? "–" :
    `${ms(s.queue_delay_mean_s)} (max ${ms(s.queue_delay_max_s)})`;
  $("s-frames").textContent = s.frames_out;
  $("s-speech").textContent = s.speech_frames_out;
  $("s-late").textContent = `${s.late_frames} / ${s.dropped_frames}`;
  $("s-pending").textContent = `${s.audio_pending_s.toFixed(2)} s`;
}

function connect(onReady) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/ws${q()}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => ws.send(JSON.stringify({ type: "start", source: $("source").value,
                                             realtime: true, sample_rate: RATE }));
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") { playFrame(ev.data); return; }
    const msg = JSON.parse(ev.data);
    if (msg.type === "ready") { status("streaming"); onReady(); }
    else if (msg.type === "stats") showStats(msg);
    else if (msg.type === "done") { showStats(msg.stats); status("done"); }
    else if (msg.type === "error") status(msg.message, true);
  };
  ws.onclose = (ev) => {
    stopInput();
    setStreaming(false);
    if (ev.code === 1008) status("refused: wrong or missing token", true);
    else if (!$("status").classList.contains("error")) status("disconnected");
  };
  ws.onerror = () => status("WebSocket error", true);
}

async function startOutput() {
  playCtx = playCtx || new AudioContext({ sampleRate: RATE });
  await playCtx.resume().catch(() => {});
  playTime = 0;
}

// ------------------------------------------------------------------ input side

function sendPcm(float32) {
  if (!ws || ws.readyState !== WebSocket.OPEN || !float32.length) return;
  const out = new Int16Array(float32.length);
  for (let i = 0; i < float32.length; i++) {
    out[i] = Math.max(-32768, Math.min(32767, Math.round(float32[i] * 32767)));
  }
  ws.send(out.buffer);
}

// Box-filter decimation from the capture rate to 16 kHz, keeping the phase across calls.
function makeDownsampler(inRate) {
  const step = inRate / RATE;
  let pos = 0, acc = 0, cnt = 0;
  return (x) => {
    const out = [];
    for (let i = 0; i < x.length; i++) {
      acc += x[i]; cnt++; pos += 1;
      if (pos >= step) { out.push(acc / cnt); acc = 0; cnt = 0; pos -= step; }
    }
    return Float32Array.from(out);
  };
}

const WORKLET = `
class Tap extends AudioWorkletProcessor {
  process(inputs) { const ch = inputs[0][0]; if (ch) this.port.postMessage(ch.slice(0)); return true; }
}
registerProcessor("tap", Tap);`;

async function startMic() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1,
    echoCancellation: true, noiseSuppression: true } });
  const ctx = new AudioContext();
  const down = makeDownsampler(ctx.sampleRate);
  const src = ctx.createMediaStreamSource(stream);
  let pending = [];
  const flush = (chunk) => {
    pending.push(...down(chunk));
    if (pending.length >= RATE / 25) { sendPcm(Float32Array.from(pending)); pending = []; }
  };
  let node;
  if (ctx.audioWorklet) {
    const url = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
    await ctx.audioWorklet.addModule(url);
    node = new AudioWorkletNode(ctx, "tap");
    node.port.onmessage = (e) => flush(e.data);
    src.connect(node);
  } else {
    node = ctx.createScriptProcessor(2048, 1, 1);
    node.onaudioprocess = (e) => flush(e.inputBuffer.getChannelData(0));
    src.connect(node);
    node.connect(ctx.destination);
  }
  return () => { stream.getTracks().forEach((t) => t.stop()); ctx.close(); };
}

async function decodeTo16k(arrayBuffer) {
  const tmp = new AudioContext();
  const decoded = await tmp.decodeAudioData(arrayBuffer);
  tmp.close();
  const off = new OfflineAudioContext(1, Math.ceil(decoded.duration * RATE), RATE);
  const src = off.createBufferSource();
  src.buffer = decoded;
  src.connect(off.destination);
  src.start();
  return (await off.startRendering()).getChannelData(0);
}

// Send decoded audio at real time in 100 ms pieces, then end the utterance.
function streamSamples(samples) {
  const piece = RATE / 10;
  let i = 0;
  const timer = setInterval(() => {
    if (i >= samples.length) {
      clearInterval(timer);
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end_segment" }));
      status("audio sent; idling");
      return;
    }
    sendPcm(samples.subarray(i, i + piece));
    i += piece;
  }, 100);
  return () => clearInterval(timer);
}

function stopInput() {
  if (feeder) { feeder(); feeder = null; }
}

async function begin(makeInput) {
  setStreaming(true);
  await startOutput();
  connect(async () => {
    try { feeder = await makeInput(); }
    catch (err) { status(`audio input failed: ${err.message || err}`, true); }
  });
}

$("mic").onclick = () => begin(startMic);
$("sample").onclick = () => begin(async () => {
  const r = await fetch("/api/sample.wav" + q());
  return streamSamples(await decodeTo16k(await r.arrayBuffer()));
});
$("file").onclick = () => $("audiofile").click();
$("audiofile").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) begin(async () => streamSamples(await decodeTo16k(await file.arrayBuffer())));
});
$("interrupt").onclick = () => {
  stopInput();
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "clear" }));
  playTime = 0;
  status("interrupted; idling");
};
$("stop").onclick = () => {
  stopInput();
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "close" }));
};

loadInfo().then((info) => {
  if (info && params.get("autostart") === "sample" && info.sample_audio) $("sample").click();
});
