// Avatars (serve --avatars DIR): create one from a video of the person talking, follow its
// build (stage, time left from the build's own estimate), and pick ready ones as sources.
import { api } from "./api.js";

const POLL_MS = 2000;

function minutes(seconds) {
  return seconds >= 60 ? `${Math.round(seconds / 60)} min` : `${Math.ceil(seconds)} s`;
}

function describe(build) {
  if (build.state === "building") {
    const p = build.progress;
    if (!p) return "starting…";
    const left = p.left_s != null ? `, about ${minutes(p.left_s)} left` : "";
    return `stage ${p.index}/${p.stages}: ${p.stage} (${p.what})${left}`;
  }
  if (build.state === "ready") return "ready";
  return `${build.state}: ${build.message}`;
}

export class Avatars {
  constructor(panel, onReady, onStatus) {
    this.panel = panel;
    this.list = panel.querySelector("#avatar-builds");
    this.onReady = onReady;    // called when a build finished (reload the source list)
    this.onStatus = onStatus;
    this.timer = null;
    this.building = new Set();
    panel.querySelector("#avatar-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.create();
    });
  }

  show() {
    this.panel.hidden = false;
    this.refresh();
  }

  async create() {
    const name = this.panel.querySelector("#avatar-name").value.trim();
    const file = this.panel.querySelector("#avatar-file").files[0];
    if (!name || !file) {
      this.onStatus("give the avatar a name and a video of the person talking", true);
      return;
    }
    this.onStatus(`uploading ${file.name} for the avatar ${name}…`);
    try {
      await api(`/api/avatars?name=${encodeURIComponent(name)}`, { method: "POST", body: file });
      this.onStatus(`building the avatar ${name} (the first line below shows its progress)`);
    } catch (err) {
      this.onStatus(err.message, true);
    }
    this.refresh();
  }

  async refresh() {
    clearTimeout(this.timer);
    let status;
    try {
      status = await (await api("/api/avatars")).json();
    } catch (err) {
      this.onStatus(`avatars: ${err.message}`, true);
      return;
    }
    this.list.innerHTML = "";
    let running = false;
    for (const build of status.builds) {
      const item = document.createElement("li");
      item.textContent = `${build.name}: ${describe(build)}`;
      item.className = build.state === "failed" ? "error" : "muted";
      this.list.appendChild(item);
      if (build.state === "building") {
        running = true;
        this.building.add(build.name);
      } else if (this.building.delete(build.name) && build.state === "ready") {
        this.onReady(build.name);
      }
    }
    if (running) this.timer = setTimeout(() => this.refresh(), POLL_MS);
  }
}
