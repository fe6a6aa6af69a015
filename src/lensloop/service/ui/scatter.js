// A small canvas scatter plot for the embedding map: wheel zooms round the cursor, drag
// pans, Shift+drag (or lasso mode) draws a lasso, Alt+drag (or box mode) a box; a click
// toggles the nearest point. Points are {id, x, y} with x, y in [0, 1].

const PAD = 16;
const HIT_PX = 7;

export class Scatter {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{onHover?: Function, onSelect?: Function, onToggle?: Function}} handlers
   */
  constructor(canvas, handlers = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.handlers = handlers;
    this.points = [];
    this.screen = new Float32Array(0);
    this.colourOf = () => "#888";
    this.selected = new Set();
    this.mode = "pan";
    this.view = { k: 1, tx: 0, ty: 0 };
    this.drag = null;
    this.hovered = null;
    this.frame = 0;
    this.listen();
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(canvas);
  }

  destroy() {
    this.resizer.disconnect();
    cancelAnimationFrame(this.frame);
  }

  setPoints(points) {
    this.points = points;
    this.screen = new Float32Array(points.length * 2);
    this.redraw();
  }

  setColours(colourOf) {
    this.colourOf = colourOf;
    this.redraw();
  }

  setSelected(ids) {
    this.selected = ids;
    this.redraw();
  }

  setMode(mode) {
    this.mode = mode;
    this.canvas.classList.toggle("selecting", mode !== "pan");
  }

  resetView() {
    this.view = { k: 1, tx: 0, ty: 0 };
    this.redraw();
  }

  /** Zoom by `factor` round the canvas point (mx, my) in CSS pixels. */
  zoom(factor, mx, my) {
    const k = Math.min(200, Math.max(0.5, this.view.k * factor));
    const f = k / this.view.k;
    this.view = { k, tx: mx - (mx - this.view.tx) * f, ty: my - (my - this.view.ty) * f };
    this.redraw();
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const { clientWidth: w, clientHeight: h } = this.canvas;
    if (!w || !h) return;
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(h * dpr);
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.draw();
  }

  redraw() {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => this.draw());
  }

  project() {
    const { clientWidth: w, clientHeight: h } = this.canvas;
    const base = Math.max(10, Math.min(w, h) - 2 * PAD);
    const ox = (w - base) / 2;
    const oy = (h - base) / 2;
    const { k, tx, ty } = this.view;
    const screen = this.screen;
    this.points.forEach((p, i) => {
      screen[2 * i] = tx + k * (ox + p.x * base);
      screen[2 * i + 1] = ty + k * (oy + (1 - p.y) * base);
    });
  }

  draw() {
    const ctx = this.ctx;
    const { clientWidth: w, clientHeight: h } = this.canvas;
    ctx.clearRect(0, 0, w, h);
    this.project();
    const size = Math.max(3, Math.min(9, 2.5 + Math.log2(this.view.k + 1) * 1.5));
    const byColour = new Map();
    this.points.forEach((p, i) => {
      const colour = this.colourOf(p);
      if (!byColour.has(colour)) byColour.set(colour, []);
      byColour.get(colour).push(i);
    });
    const half = size / 2;
    for (const [colour, indices] of byColour) {
      ctx.fillStyle = colour;
      ctx.beginPath();
      for (const i of indices) {
        const x = this.screen[2 * i];
        const y = this.screen[2 * i + 1];
        if (x < -size || y < -size || x > w + size || y > h + size) continue;
        ctx.moveTo(x + half, y);
        ctx.arc(x, y, half, 0, 2 * Math.PI);
      }
      ctx.fill();
    }
    if (this.selected.size) {
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#111";
      ctx.beginPath();
      this.points.forEach((p, i) => {
        if (!this.selected.has(p.id)) return;
        const x = this.screen[2 * i];
        const y = this.screen[2 * i + 1];
        ctx.moveTo(x + half + 2, y);
        ctx.arc(x, y, half + 2, 0, 2 * Math.PI);
      });
      ctx.stroke();
    }
    if (this.hovered !== null) {
      const i = this.hovered;
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#1f6feb";
      ctx.beginPath();
      ctx.arc(this.screen[2 * i], this.screen[2 * i + 1], half + 4, 0, 2 * Math.PI);
      ctx.stroke();
    }
    this.drawGesture();
  }

  drawGesture() {
    const drag = this.drag;
    if (!drag || drag.kind === "pan") return;
    const ctx = this.ctx;
    ctx.save();
    ctx.setLineDash([5, 4]);
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = "#1f6feb";
    ctx.fillStyle = "rgba(31, 111, 235, 0.08)";
    ctx.beginPath();
    if (drag.kind === "box") {
      const [x0, y0] = drag.start;
      const [x1, y1] = drag.last;
      ctx.rect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    } else {
      drag.path.forEach(([x, y], n) => (n ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath();
    }
    ctx.fill();
    ctx.stroke();
    ctx.restore();
  }

  /** Index of the point nearest (mx, my) within the hit radius, or null. */
  nearest(mx, my) {
    let best = null;
    let bestD = HIT_PX * HIT_PX;
    for (let i = 0; i < this.points.length; i++) {
      const dx = this.screen[2 * i] - mx;
      const dy = this.screen[2 * i + 1] - my;
      const d = dx * dx + dy * dy;
      if (d <= bestD) {
        bestD = d;
        best = i;
      }
    }
    return best;
  }

  /** Ids of the points inside the current box or lasso. */
  enclosed(drag) {
    const ids = [];
    if (drag.kind === "box") {
      const [x0, y0] = drag.start;
      const [x1, y1] = drag.last;
      const [left, right] = [Math.min(x0, x1), Math.max(x0, x1)];
      const [top, bottom] = [Math.min(y0, y1), Math.max(y0, y1)];
      this.points.forEach((p, i) => {
        const x = this.screen[2 * i];
        const y = this.screen[2 * i + 1];
        if (x >= left && x <= right && y >= top && y <= bottom) ids.push(p.id);
      });
    } else if (drag.path.length > 2) {
      this.points.forEach((p, i) => {
        if (inside(this.screen[2 * i], this.screen[2 * i + 1], drag.path)) ids.push(p.id);
      });
    }
    return ids;
  }

  local(event) {
    const rect = this.canvas.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  listen() {
    const canvas = this.canvas;
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      const [mx, my] = this.local(event);
      this.zoom(Math.exp(-event.deltaY * 0.0015), mx, my);
    }, { passive: false });

    canvas.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      canvas.setPointerCapture(event.pointerId);
      const at = this.local(event);
      let kind = this.mode;
      if (event.shiftKey) kind = "lasso";
      else if (event.altKey) kind = "box";
      this.drag = {
        kind, start: at, last: at, path: [at], moved: 0,
        additive: event.ctrlKey || event.metaKey, view: { ...this.view },
      };
      this.setHover(null, event);
    });

    canvas.addEventListener("pointermove", (event) => {
      const at = this.local(event);
      const drag = this.drag;
      if (!drag) {
        this.setHover(this.nearest(at[0], at[1]), event);
        return;
      }
      drag.moved = Math.max(drag.moved, Math.hypot(at[0] - drag.start[0], at[1] - drag.start[1]));
      drag.last = at;
      if (drag.kind === "pan") {
        this.view = {
          k: drag.view.k,
          tx: drag.view.tx + at[0] - drag.start[0],
          ty: drag.view.ty + at[1] - drag.start[1],
        };
      } else if (drag.kind === "lasso") {
        drag.path.push(at);
      }
      this.redraw();
    });

    const finish = (event) => {
      const drag = this.drag;
      if (!drag) return;
      this.drag = null;
      const [mx, my] = this.local(event);
      if (drag.moved < 4) {
        const i = this.nearest(mx, my);
        if (i !== null && this.handlers.onToggle) this.handlers.onToggle(this.points[i]);
      } else if (drag.kind !== "pan" && this.handlers.onSelect) {
        this.handlers.onSelect(this.enclosed(drag), drag.additive);
      }
      this.redraw();
    };
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", () => {
      this.drag = null;
      this.redraw();
    });
    canvas.addEventListener("pointerleave", (event) => {
      if (!this.drag) this.setHover(null, event);
    });
  }

  setHover(index, event) {
    if (index === this.hovered) {
      if (index !== null && this.handlers.onHover) this.handlers.onHover(this.points[index], this.local(event));
      return;
    }
    this.hovered = index;
    if (this.handlers.onHover) {
      this.handlers.onHover(index === null ? null : this.points[index], this.local(event));
    }
    this.redraw();
  }
}

/** Whether (x, y) lies inside the polygon `path` (even-odd rule). */
function inside(x, y, path) {
  let result = false;
  for (let i = 0, j = path.length - 1; i < path.length; j = i++) {
    const [xi, yi] = path[i];
    const [xj, yj] = path[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) result = !result;
  }
  return result;
}
