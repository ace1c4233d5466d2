// The dashboard's only way to the platform: the HTTP API with the support key as a Bearer token,
// and Server-Sent Events opened with single-use tickets (EventSource cannot send headers).

const KEY = "refeed.supportKey";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
};

/** An API answer that was not 2xx, with the platform's error code and message. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error ?? "http_error";
  }
}

/** Listeners for a key that stopped working (revoked, expired): the app signs out. */
const unauthorized = new Set();
export const onUnauthorized = (listener) => unauthorized.add(listener);

// Relative to the page, so the dashboard also works behind a proxy that mounts Refeed under a path.
const url = (path) => new URL(`../${path}`, document.baseURI);

export async function api(path, { method = "GET", key = session.key, signal } = {}) {
  const res = await fetch(url(path), {
    method,
    signal,
    headers: { authorization: `Bearer ${key}`, accept: "application/json" },
  });
  const text = await res.text();
  let body;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const error = new ApiError(res.status, body);
    if (res.status === 401 && key === session.key) for (const listener of unauthorized) listener(error);
    throw error;
  }
  return body;
}

export const query = (params) => {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params))
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  const text = search.toString();
  return text ? `?${text}` : "";
};

/**
 * A live stream that survives network trouble: each (re)connection trades the
 * key for a fresh ticket; failures back off up to 30 s. `status` reports
 * "live", "connecting" or "offline" for the header.
 */
export function live(path, handlers, status) {
  let source;
  let stopped = false;
  let failures = 0;
  let timer;
  const connect = async () => {
    if (stopped) return;
    status("connecting");
    let ticket;
    try {
      ({ ticket } = await api("api/live/tickets", { method: "POST" }));
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return stop();
      return retry();
    }
    if (stopped) return;
    const target = url(typeof path === "function" ? path() : path);
    target.searchParams.set("ticket", ticket);
    source = new EventSource(target);
    source.onopen = () => {
      failures = 0;
      status("live");
    };
    source.onerror = () => {
      // A used ticket cannot reopen the stream: close it and come back with a new one.
      source.close();
      retry();
    };
    source.addEventListener("expired", () => {
      source.close();
      connect();
    });
    for (const [event, handle] of Object.entries(handlers)) {
      source.addEventListener(event, (e) => {
        try {
          handle(JSON.parse(e.data));
        } catch (err) {
          console.error(`live ${event}`, err);
        }
      });
    }
  };
  const retry = () => {
    if (stopped) return;
    status("offline");
    failures += 1;
    timer = setTimeout(connect, Math.min(30_000, 1000 * 2 ** Math.min(failures - 1, 5)));
  };
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    source?.close();
    status("");
  };
  connect();
  return stop;
}
