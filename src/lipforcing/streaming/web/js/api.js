// The server's HTTP API and the access token. The token is never put in a URL the server sees:
// it comes from the address fragment (#token=..., which browsers do not send) or the token
// form, lives in sessionStorage, and travels as an Authorization header (HTTP) or in the first
// WebSocket message.
const KEY = "lipforcing-token";

export function token() {
  return sessionStorage.getItem(KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

// Move #token=... from the address into sessionStorage and drop it from the address bar.
export function takeTokenFromFragment() {
  const match = location.hash.match(/(?:^#|&)token=([^&]*)/);
  if (!match) return;
  setToken(decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

export function authHeaders(extra = {}) {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

// fetch() with the token; throws an Error carrying the server's message on a refusal.
export async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = new Error(body.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response;
}
