// Sources: the list the server keeps, uploads, and the preview drawn before streaming.
import { api } from "./api.js";

export class Sources {
  constructor(select, stage, onStatus) {
    this.select = select;
    this.stage = stage;          // a Stage: shows the preview while idle
    this.onStatus = onStatus;
    select.addEventListener("change", () => this.preview());
  }

  get current() {
    return this.select.value;
  }

  fill(list) {
    this.select.innerHTML = "";
    for (const s of list) this.add(s, false);
    this.preview();
  }

  add(s, choose = true) {
    const option = document.createElement("option");
    option.value = s.source;
    option.textContent = `${s.name} (${s.width}×${s.height}, ${s.frames} frames)`;
    this.select.appendChild(option);
    if (choose) {
      this.select.value = s.source;
      this.preview();
    }
  }

  async upload(file) {
    this.onStatus(`uploading ${file.name} and tracking the face…`);
    try {
      const response = await api(`/api/sources?name=${encodeURIComponent(file.name)}`,
                                  { method: "POST", body: file });
      const body = await response.json();
      this.add(body);
      this.onStatus(`source ready: ${body.name}`);
    } catch (err) {
      this.onStatus(err.message, true);
    }
  }

  // The source's first frame, so the face is on screen before any stream starts.
  async preview() {
    if (!this.current) return;
    try {
      const response = await api(`/api/sources/${encodeURIComponent(this.current)}/preview.jpg`);
      this.stage.showStill(await createImageBitmap(await response.blob()));
    } catch (err) {
      this.onStatus(`no preview: ${err.message}`, true);
    }
  }
}
