// lipforcing live page: choose a source (or upload one; its face shows at once), pick an
// audio input (microphone, a file, the built-in speech) and a transport; the lip-synced video
// comes back with the audio it plays. Transports live in their own modules.
import { api, setToken, takeTokenFromFragment } from "./api.js";
import { fromFileBytes, microphone } from "./audio-input.js";
import { Avatars } from "./avatars.js";
import { Sources } from "./sources.js";
import { Stage } from "./stage.js";
import { StatsPanel } from "./stats.js";
import { RtcTransport } from "./rtc-transport.js";
import { WebSocketTransport } from "./ws-transport.js";

const $ = (id) => document.getElementById(id);
const TRANSPORTS = { webrtc: RtcTransport, websocket: WebSocketTransport };

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

const stage = new Stage($("out"), $("video"));
const stats = new StatsPanel($("stats"));
const sources = new Sources($("source"), $("face"), $("face-note"), stage, status);
const avatars = new Avatars($("avatar-panel"), (name) => {
  status(`avatar ${name} is ready`);
  loadInfo();
}, status);
let transport = null;
let input = null;
let meter = null;

function setStreaming(on) {
  for (const id of ["mic", "file", "sample", "transport", "source", "upload", "silence-gate"]) {
    $(id).disabled = on;
  }
  if (on) $("face").disabled = true;
  else sources.fillFaces();
  $("interrupt").disabled = !on;
  $("stop").disabled = !on;
}

async function loadInfo() {
  try {
    const info = await (await api("/api/info")).json();
    $("token-form").hidden = true;
    $("model").textContent = `${info.preset} · ${info.checkpoint} · ${info.fps} fps`;
    sources.fill(info.sources);
    $("sample").disabled = !info.sample_audio;
    if (info.avatars) avatars.show();
    return info;
  } catch (err) {
    if (err.status === 401) {
      $("token-form").hidden = false;
      status("this server needs its access token", true);
    } else status(`server refused: ${err.message}`, true);
    return null;
  }
}

function finished(error) {
  clearInterval(meter);
  if (input) input.stop();
  input = null;
  transport = null;
  setStreaming(false);
  if (error) status(error, true);
  else if (!$("status").classList.contains("error")) status("idle");
  sources.preview();
}

async function begin(makeInput) {
  setStreaming(true);
  stats.reset();
  try {
    input = await makeInput();
  } catch (err) {
    status(`audio input failed: ${err.message || err}`, true);
    setStreaming(false);
    return;
  }
  const Transport = TRANSPORTS[$("transport").value];
  transport = new Transport({ stage, stats, onStatus: status, onEnd: finished });
  window.lipforcingTransport = transport;  // for the console and the browser tests
  stage.drawn = 0;
  meter = setInterval(() => transport && stats.measured(stage.drawn, transport.bytes), 1000);
  status("connecting…");
  // the session options the page chooses (validated by the server like every other option)
  const options = { ...sources.options, silence_gate: $("silence-gate").checked };
  await transport.start(sources.current, input, options);
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  setToken($("token").value.trim());
  $("token").value = "";
  loadInfo();
});
$("upload").addEventListener("change", (e) => e.target.files[0] && sources.upload(e.target.files[0]));
$("mic").onclick = () => begin(microphone);
$("sample").onclick = () => begin(async () =>
  fromFileBytes(await (await api("/api/sample.wav")).arrayBuffer()));
$("file").onclick = () => $("audiofile").click();
$("audiofile").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) begin(async () => fromFileBytes(await file.arrayBuffer()));
});
$("interrupt").onclick = () => {
  if (input) input.stop();
  if (transport) transport.interrupt();
  status("interrupted; idling");
};
$("stop").onclick = () => {
  if (input) input.stop();
  if (transport) transport.stop();
};

takeTokenFromFragment();
const query = new URLSearchParams(location.search);
if (query.get("transport") in TRANSPORTS) $("transport").value = query.get("transport");
loadInfo().then((info) => {
  const auto = query.get("autostart");
  if (info && auto === "sample" && info.sample_audio) $("sample").click();
  if (info && auto === "mic") $("mic").click();
});
