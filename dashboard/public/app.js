// The support dashboard: sign-in with a support key, then the fleet (#/) and a device (#/device/<id>).
import { api, ApiError, onUnauthorized, session } from "./api.js";
import { h, replace } from "./dom.js";
import { fleetView } from "./fleet.js";
import { deviceView } from "./device.js";

const main = document.getElementById("main");
const signOut = document.getElementById("sign-out");
const liveStatus = document.getElementById("live-status");

const LIVE_TEXT = { live: "Live", connecting: "Connecting\u2026", offline: "Reconnecting\u2026", "": "" };
let shownStatus;
/** The header's live indicator; announced politely, and only when it changes. */
export function setLive(state) {
  if (state === shownStatus) return;
  shownStatus = state;
  liveStatus.textContent = LIVE_TEXT[state] ?? "";
  liveStatus.dataset.state = state;
}

let current; // the view on screen: { stop() }
let notice = "";

let loaded = false;
function route() {
  // After a navigation inside the page, focus moves to the new view's heading; on first load it stays put.
  const focus = loaded;
  loaded = true;
  current?.stop?.();
  current = undefined;
  setLive("");
  if (!session.key) return showSignIn();
  signOut.hidden = false;
  const [path, search = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(search);
  const device = /^\/device\/(.+)$/.exec(path ?? "");
  const view = { setLive, focus };
  current = device ? deviceView(main, decodeURIComponent(device[1]), params, view) : fleetView(main, params, view);
}

function showSignIn() {
  signOut.hidden = true;
  const input = h("input", {
    id: "key",
    name: "key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "key-help",
  });
  const error = h("p", { id: "sign-in-error", class: "error", role: "alert" }, notice);
  notice = "";
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    {
      class: "sign-in",
      onsubmit: async (event) => {
        event.preventDefault();
        const key = input.value.trim();
        button.disabled = true;
        error.textContent = "";
        try {
          await api("api/fleet/health?limit=1", { key });
          session.key = key;
          route();
        } catch (err) {
          error.textContent =
            err instanceof ApiError && err.status === 401
              ? "This key is not valid: it may be mistyped, revoked or expired."
              : err instanceof ApiError && err.status === 403
                ? "This key does not have the support role."
                : `Could not sign in: ${err.message}`;
          input.focus();
        } finally {
          button.disabled = false;
        }
      },
    },
    h("h1", { tabindex: "-1" }, "Sign in"),
    h(
      "p",
      { id: "key-help" },
      "Paste the support key your administrator gave you (it starts with rfk.). It is kept in this tab only, until you sign out or close it.",
    ),
    h("label", { for: "key" }, "Support key"),
    input,
    button,
    error,
  );
  replace(main, form);
  input.focus();
}

signOut.addEventListener("click", () => {
  session.key = null;
  location.hash = "#/";
  route();
});

onUnauthorized(() => {
  session.key = null;
  notice = "Your key stopped working (revoked or expired). Sign in again.";
  route();
});

window.addEventListener("hashchange", route);
route();
