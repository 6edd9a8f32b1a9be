// Audio inputs as MediaStreams: the microphone, or a decoded file / the built-in sample played
// into a MediaStreamAudioDestinationNode. Both transports take a MediaStream: WebRTC sends its
// track as is (Opus at 48 kHz); the WebSocket transport taps it at the capture rate and sends
// int16 PCM at that rate, announced in its start message, so the server's soxr resampler does
// the rate conversion (no decimation in the page).

export class AudioInput {
  constructor(stream, ended, stop) {
    this.stream = stream;   // MediaStream with one audio track
    this.ended = ended;     // Promise resolved when a file input has played to its end
    this.stop = stop;       // stops the input
  }
}

export async function microphone() {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
  });
  return new AudioInput(stream, new Promise(() => {}), () => stream.getTracks().forEach((t) => t.stop()));
}

// Play decoded audio (from a file's bytes) into a MediaStream, in real time.
export async function fromFileBytes(arrayBuffer) {
  const ctx = new AudioContext();
  const decoded = await ctx.decodeAudioData(arrayBuffer);
  const node = ctx.createBufferSource();
  node.buffer = decoded;
  const sink = ctx.createMediaStreamDestination();
  node.connect(sink);
  const ended = new Promise((resolve) => { node.onended = resolve; });
  await ctx.resume();
  node.start(ctx.currentTime + 0.05);
  const stop = () => { try { node.stop(); } catch (e) { /* already stopped */ } ctx.close(); };
  return new AudioInput(sink.stream, ended, stop);
}

const TAP = `
class Tap extends AudioWorkletProcessor {
  process(inputs) { const ch = inputs[0][0]; if (ch) this.port.postMessage(ch.slice(0)); return true; }
}
registerProcessor("tap", Tap);`;

// Call onPcm(Float32Array) with the stream's samples at ctx.sampleRate, in ~40 ms pieces.
export async function tapPcm(ctx, stream, onPcm) {
  const url = URL.createObjectURL(new Blob([TAP], { type: "text/javascript" }));
  await ctx.audioWorklet.addModule(url);
  const node = new AudioWorkletNode(ctx, "tap");
  const source = ctx.createMediaStreamSource(stream);
  const piece = Math.round(ctx.sampleRate / 25);
  let pending = [];
  let count = 0;
  node.port.onmessage = (e) => {
    pending.push(e.data);
    count += e.data.length;
    if (count < piece) return;
    const out = new Float32Array(count);
    let at = 0;
    for (const part of pending) { out.set(part, at); at += part.length; }
    pending = [];
    count = 0;
    onPcm(out);
  };
  source.connect(node);
  return () => { source.disconnect(); node.disconnect(); };
}

export function toInt16(float32) {
  const out = new Int16Array(float32.length);
  for (let i = 0; i < float32.length; i++) {
    out[i] = Math.max(-32768, Math.min(32767, Math.round(float32[i] * 32767)));
  }
  return out;
}
