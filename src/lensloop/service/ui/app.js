// The page's shell: sign-in, the class bar, the selection bar, keyboard shortcuts and the
// hash router (#/gallery, #/map, #/queue, #/models, #/similar/ID).

import { api, setUnauthorizedHandler, thumbnailUrl } from "./api.js";
import { failure, h, toast } from "./dom.js";
import { gallery } from "./gallery.js";
import { map } from "./map.js";
import { models } from "./models.js";
import { queue } from "./queue.js";
import { similar } from "./similar.js";
import {
  classColour, classForKey, classKey, clearSelection, label, onClasses, onSelection,
  refreshClasses, state, toggle,
} from "./store.js";

const VIEWS = { gallery, map, queue, models, similar };
const LABELLING_VIEWS = new Set(["gallery", "map", "queue", "similar"]);
const TRAY_LIMIT = 150;

const main = document.getElementById("view");
let current = null; // {name, handle}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, search = ""] = raw.split("?");
  const [name, ...rest] = path.split("/").filter(Boolean);
  return { name: name || "gallery", arg: rest.length ? decodeURIComponent(rest.join("/")) : undefined, params: new URLSearchParams(search) };
}

function route() {
  const { name, arg, params } = parseHash();
  if (current && current.handle && current.handle.destroy) current.handle.destroy();
  const view = VIEWS[name];
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  document.getElementById("classbar").hidden = !LABELLING_VIEWS.has(name);
  if (!view) {
    current = null;
    main.replaceChildren(h("p", { class: "error" }, `No page "${name}".`), h("a", { href: "#/gallery" }, "Go to the gallery"));
    return;
  }
  let handle = null;
  try {
    handle = view(main, params, arg);
  } catch (error) {
    main.replaceChildren(failure(error));
  }
  current = { name, handle };
  document.title = `lensloop · ${name}`;
}

function drawClassBar() {
  const bar = document.getElementById("classbar");
  if (!state.classes.length) {
    bar.replaceChildren(h("span", { class: "muted" }, "No classes yet: add them to the project's label schema."));
    return;
  }
  bar.replaceChildren(...state.classes.map((cls) => {
    const key = classKey(cls.path);
    return h("button", {
      type: "button", class: "cls", dataset: { path: cls.path },
      title: key ? `Label the selection ${cls.path} (key ${key})` : `Label the selection ${cls.path}`,
      onclick: () => assign(cls.path),
    },
    key ? h("kbd", {}, String(key)) : null,
    h("span", { class: "swatch", style: `background:${classColour(cls.path)}` }),
    cls.path, h("span", { class: "count" }, String(cls.count)));
  }));
}

function drawSelectionBar(selection) {
  const bar = document.getElementById("selectionbar");
  bar.hidden = selection.size === 0;
  document.getElementById("selection-count").textContent =
    `${selection.size} selected — press a class key to label ${selection.size === 1 ? "it" : "them all"}`;
  const ids = [...selection];
  const tray = document.getElementById("selection-tray");
  const thumbs = ids.slice(0, TRAY_LIMIT).map((id) => h("button", {
    type: "button", title: `Deselect #${id}`, onclick: () => toggle(id),
  }, h("img", { src: thumbnailUrl(id, 128), alt: `Selected image ${id}`, loading: "lazy", width: 40, height: 40 })));
  if (ids.length > TRAY_LIMIT) thumbs.push(h("span", { class: "more" }, `+${ids.length - TRAY_LIMIT} more`));
  tray.replaceChildren(...thumbs);
}

async function assign(path) {
  if (current && current.handle && current.handle.assign) {
    await current.handle.assign(path);
    return;
  }
  const ids = [...state.selection];
  if (await label(ids, path)) clearSelection();
}

function onKey(event) {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
  if (document.querySelector("dialog[open]")) return;
  const handle = current && current.handle;
  if (/^[1-9]$/.test(event.key)) {
    const path = classForKey(Number(event.key));
    if (path && current && LABELLING_VIEWS.has(current.name)) {
      event.preventDefault();
      assign(path);
    }
  } else if (event.key === "Escape") {
    clearSelection();
  } else if (event.key === "?") {
    document.getElementById("help-dialog").showModal();
  } else if (event.key === "a" && handle && handle.selectAll) {
    event.preventDefault();
    handle.selectAll();
  } else if (handle && handle.onKey && handle.onKey(event)) {
    event.preventDefault();
  }
}

/** Resolve once the server accepts us: at once when no token is needed. */
async function signIn() {
  const session = await api.session();
  if (!session.auth_required || session.authenticated) return;
  await askToken();
}

let asking = null;

function askToken() {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  const message = document.getElementById("token-error");
  asking = new Promise((resolve) => {
    const form = document.getElementById("token-form");
    form.onsubmit = async (event) => {
      event.preventDefault();
      try {
        await api.signIn(input.value);
        message.textContent = "";
        input.value = "";
        dialog.close();
        asking = null;
        resolve();
      } catch (error) {
        message.textContent = error.status === 401 || error.status === 403 ? "That token is not valid." : error.message;
      }
    };
    dialog.addEventListener("cancel", (event) => event.preventDefault());
    dialog.showModal();
    input.focus();
  });
  return asking;
}

async function start() {
  document.getElementById("help-button").addEventListener("click", () => document.getElementById("help-dialog").showModal());
  document.getElementById("selection-clear").addEventListener("click", clearSelection);
  document.getElementById("selection-queue").addEventListener("click", () => (location.hash = "#/queue/selection"));
  document.addEventListener("keydown", onKey);
  onSelection(drawSelectionBar);
  onClasses(drawClassBar);
  setUnauthorizedHandler(() => askToken().then(route));
  try {
    await signIn();
    state.project = await api.project();
    await refreshClasses();
  } catch (error) {
    main.replaceChildren(failure(error));
    return;
  }
  const p = state.project;
  document.getElementById("project-name").textContent = `${p.name} · ${p.task} · ${p.images} images`;
  window.addEventListener("hashchange", route);
  if (!location.hash) history.replaceState(null, "", "#/gallery");
  route();
}

start().catch((error) => toast(error.message, { error: true }));
