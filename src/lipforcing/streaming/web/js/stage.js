// The output: a <video> for WebRTC streams, a <canvas> for WebSocket frames and previews.
export class Stage {
  constructor(canvas, video) {
    this.canvas = canvas;
    this.video = video;
    this.g = canvas.getContext("2d");
    this.drawn = 0;              // frames drawn (WebSocket) or presented (WebRTC), measured
  }

  showStill(bitmap) {
    this.showCanvas();
    this.draw(bitmap, false);
  }

  draw(bitmap, count = true) {
    if (this.canvas.width !== bitmap.width || this.canvas.height !== bitmap.height) {
      this.canvas.width = bitmap.width;
      this.canvas.height = bitmap.height;
    }
    this.g.drawImage(bitmap, 0, 0);
    bitmap.close();
    if (count) this.drawn++;
  }

  showCanvas() {
    this.video.hidden = true;
    this.canvas.hidden = false;
  }

  showVideo(stream) {
    this.video.srcObject = stream;
    this.video.hidden = false;
    this.canvas.hidden = true;
    const count = () => { this.drawn++; this.video.requestVideoFrameCallback(count); };
    if (this.video.requestVideoFrameCallback) this.video.requestVideoFrameCallback(count);
    return this.video.play().catch(() => {});
  }
}
