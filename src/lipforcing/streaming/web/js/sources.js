// Sources: the list the server keeps, uploads, the face each session drives, and the preview
// drawn before streaming.
//
// Face choice: a source is tracked once, when it is stored, with one face (largest unless the
// upload said otherwise). A session may ask for another (the "face" session option, spelled
// as --face): the server then tracks the source's frames again with that choice, once, and
// keeps that track for later sessions. The selector offers the faces the detector saw in the
// source's first frame with a face (largest, center, 0 = leftmost, ...); a source whose track
// was given (known landmarks, an avatar) drives its own face only.
import { api } from "./api.js";

export class Sources {
  constructor(select, faceSelect, faceNote, stage, onStatus) {
    this.select = select;
    this.faceSelect = faceSelect;
    this.faceNote = faceNote;
    this.stage = stage;          // a Stage: shows the preview while idle
    this.onStatus = onStatus;
    this.described = new Map();  // source id -> its description from the server
    select.addEventListener("change", () => { this.fillFaces(); this.preview(); });
  }

  get current() {
    return this.select.value;
  }

  // The session options this panel chooses: the face, when another than the source's own.
  get options() {
    return this.faceSelect.value ? { face: this.faceSelect.value } : {};
  }

  fill(list) {
    this.select.innerHTML = "";
    this.described.clear();
    for (const s of list) this.add(s, false);
    this.fillFaces();
    this.preview();
  }

  add(s, choose = true) {
    const option = document.createElement("option");
    option.value = s.source;
    option.textContent = `${s.name} (${s.width}×${s.height}, ${s.frames} frames)`;
    this.select.appendChild(option);
    this.described.set(s.source, s);
    if (choose) {
      this.select.value = s.source;
      this.fillFaces();
      this.preview();
    }
  }

  fillFaces() {
    const s = this.described.get(this.current) || {};
    const own = s.face || "its own";
    this.faceSelect.innerHTML = "";
    const choices = [["", `as tracked (${own})`]];
    if (s.face_choice) {
      choices.push(["largest", "largest"], ["center", "nearest the centre"]);
      for (let i = 0; i < (s.faces || 1); i++) {
        choices.push([String(i), `index ${i} from the left${i === 0 ? " (leftmost)" : ""}`]);
      }
    }
    for (const [value, label] of choices) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = label;
      this.faceSelect.appendChild(option);
    }
    this.faceSelect.disabled = !s.face_choice;
    const seen = s.faces ? `${s.faces} face${s.faces === 1 ? "" : "s"} seen; ` : "";
    const found = s.frames_with_face !== undefined
      ? `driven face in ${s.frames_with_face} of ${s.frames} frames`
      : "";
    this.faceNote.textContent = s.face_choice
      ? `${seen}${found}. Another face is tracked once when a session first asks for it.`
      : `${found}${found ? ". " : ""}The face track was given: no other face to choose.`;
  }

  async upload(file) {
    this.onStatus(`uploading ${file.name} and tracking the face…`);
    try {
      const response = await api(`/api/sources?name=${encodeURIComponent(file.name)}`,
                                  { method: "POST", body: file });
      const body = await response.json();
      this.add(body);
      const faces = body.faces > 1 ? ` (${body.faces} faces seen: choose one under Face driven)` : "";
      this.onStatus(`source ready: ${body.name}${faces}`);
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
