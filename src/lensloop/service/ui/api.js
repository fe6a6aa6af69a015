// The /v1 JSON API, as the page uses it. Every call goes to the same origin; the session
// cookie set by POST /v1/session travels with it (so <img> tags work too).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = null;

/** Register what happens when a call answers 401 (the page shows its token prompt). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => search.append(key, v));
    else search.append(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function request(method, path, { params, json, form } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const response = await fetch(path + query(params), init);
  let body = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) body = await response.json();
  if (!response.ok) {
    const error = (body && body.error) || {};
    if (response.status === 401 && onUnauthorized) onUnauthorized();
    throw new ApiError(response.status, error.code || "http", error.message || response.statusText);
  }
  return body;
}

export const api = {
  session: () => request("GET", "/v1/session"),
  signIn: (token) => request("POST", "/v1/session", { json: { token } }),
  project: () => request("GET", "/v1/project"),
  classes: () => request("GET", "/v1/classes"),
  images: (params) => request("GET", "/v1/images", { params }),
  image: (id) => request("GET", `/v1/images/${id}`),
  label: (imageIds, label) =>
    request("POST", "/v1/labels", { json: { image_ids: imageIds, label, annotator: "ui" } }),
  map: (backbone) => request("GET", "/v1/map", { params: { backbone } }),
  clusters: (backbone) => request("GET", "/v1/clusters", { params: { backbone } }),
  makeClusters: (backbone, k) =>
    request("POST", "/v1/clusters", { json: { backbone: backbone || null, k: k || null, method: "kmeans" } }),
  similar: (imageId, k, backbone) =>
    request("GET", "/v1/similar", { params: { image_id: imageId, k, backbone } }),
  select: (n, strategy, backbone) =>
    request("POST", "/v1/select", { json: { n, strategy: strategy || undefined, backbone: backbone || null, seed: 0 } }),
  rounds: () => request("GET", "/v1/rounds"),
  round: (id) => request("GET", `/v1/rounds/${id}`),
  models: () => request("GET", "/v1/models"),
  model: (ref) => request("GET", `/v1/models/${encodeURIComponent(ref)}`),
  predictions: (ref, params) =>
    request("GET", `/v1/models/${encodeURIComponent(ref)}/predictions`, { params }),
};

export const thumbnailUrl = (id, size) => `/v1/images/${id}/thumbnail${size ? `?size=${size}` : ""}`;
export const fileUrl = (id) => `/v1/images/${id}/file`;
