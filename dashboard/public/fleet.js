// Fleet view: every device, worst experience health first, with search and live updates.
import { api, live, query } from "./api.js";
import { h, replace, scoreBadge, signed, statusText, time } from "./dom.js";

const COMPONENTS = [
  ["reliability", "rel"],
  ["performance", "perf"],
  ["sentiment", "sent"],
  ["participation", "part"],
  ["connectivity", "conn"],
];
const PAGE = 50;

export function fleetView(main, params, { setLive, focus }) {
  const state = {
    q: params.get("q") ?? "",
    status: params.get("status") ?? "",
    window: params.get("window") ?? "",
    offset: Number(params.get("offset") ?? 0) || 0,
  };
  let controller;
  let searchTimer;

  const search = h("input", {
    id: "fleet-q",
    type: "search",
    value: state.q,
    autocomplete: "off",
    placeholder: "device, kind or customer id",
  });
  const status = h(
    "select",
    { id: "fleet-status" },
    h("option", { value: "" }, "All"),
    ["poor", "fair", "good", "unknown"].map((s) =>
      h("option", { value: s, selected: state.status === s }, statusText[s]),
    ),
  );
  const windowSelect = h(
    "select",
    { id: "fleet-window" },
    [
      ["", "Default (7 days)"],
      ["24h", "24 hours"],
      ["7d", "7 days"],
      ["30d", "30 days"],
    ].map(([value, label]) => h("option", { value, selected: state.window === value }, label)),
  );
  const summary = h("p", { class: "summary", id: "fleet-summary" }, "Loading\u2026");
  const body = h("tbody");
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const error = h("p", { class: "error", role: "alert" });
  const title = h("h1", { tabindex: "-1" }, "Fleet health");

  const remember = () => {
    const hash = `#/${query({ q: state.q, status: state.status, window: state.window, offset: state.offset || "" })}`;
    history.replaceState(null, "", hash);
  };

  async function load() {
    controller?.abort();
    controller = new AbortController();
    try {
      const page = await api(
        `api/fleet/health${query({ q: state.q, status: state.status, window: state.window, offset: state.offset, limit: PAGE })}`,
        { signal: controller.signal },
      );
      error.textContent = "";
      render(page);
    } catch (err) {
      if (err.name === "AbortError") return;
      error.textContent = `Could not load the fleet: ${err.message}`;
    }
  }

  function render(page) {
    const s = page.summary;
    replace(
      summary,
      `${s.devices} devices: ${s.poor} poor, ${s.fair} fair, ${s.good} good, ${s.unknown} without data. Window ${page.window}, computed `,
      time(page.computedAt),
      ".",
    );
    if (page.devices.length === 0) {
      replace(
        body,
        h(
          "tr",
          {},
          h(
            "td",
            { colspan: 6, class: "empty" },
            state.q ? `No device matches \u201c${state.q}\u201d.` : "No devices.",
          ),
        ),
      );
    } else {
      replace(body, page.devices.map(row));
    }
    const first = page.total === 0 ? 0 : page.offset + 1;
    const last = page.offset + page.devices.length;
    replace(
      pager,
      h(
        "button",
        { type: "button", class: "quiet", disabled: page.offset === 0, onclick: () => move(-PAGE) },
        "Previous",
      ),
      h("span", { "aria-live": "polite" }, `${first}\u2013${last} of ${page.total}`),
      h("button", { type: "button", class: "quiet", disabled: last >= page.total, onclick: () => move(PAGE) }, "Next"),
    );
  }

  function row(d) {
    const negative = d.feedback.latestNegative;
    return h(
      "tr",
      { "data-device": d.device, class: d.status },
      h("td", { class: "health" }, scoreBadge(d.score, d.status)),
      h(
        "th",
        { scope: "row", class: "device" },
        h("a", { href: `#/device/${encodeURIComponent(d.device)}` }, d.device),
        h("span", { class: "meta" }, [d.kind, d.subject].filter(Boolean).join(" \u00b7 ")),
      ),
      h(
        "td",
        { class: "presence" },
        h("span", { class: `dot ${d.online ? "on" : "off"}` }, d.online ? "online" : "offline"),
        h("span", { class: "meta" }, "seen ", time(d.lastSeen)),
      ),
      h(
        "td",
        { class: "parts" },
        h(
          "ul",
          { class: "mini" },
          COMPONENTS.map(([c, short]) =>
            h(
              "li",
              {},
              h("abbr", { class: "name", title: c }, short),
              h("span", { class: "num" }, d.components[c] === null ? "\u2013" : Math.round(d.components[c])),
            ),
          ),
        ),
      ),
      h(
        "td",
        { class: "said" },
        negative
          ? [
              h("q", {}, negative.text),
              h(
                "span",
                { class: "meta" },
                `sentiment ${signed(negative.sentiment)}`,
                negative.rating !== null ? ` \u00b7 rating ${negative.rating}/5` : "",
                ` \u00b7 ${d.feedback.negative} negative \u00b7 `,
                time(negative.at),
              ),
            ]
          : h("span", { class: "meta" }, "no negative feedback"),
      ),
    );
  }

  function move(by) {
    state.offset = Math.max(0, state.offset + by);
    remember();
    load().then(() => title.focus());
  }

  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      state.q = search.value.trim();
      state.offset = 0;
      remember();
      load();
    }, 250);
  });
  for (const [select, name] of [
    [status, "status"],
    [windowSelect, "window"],
  ]) {
    select.addEventListener("change", () => {
      state[name] = select.value;
      state.offset = 0;
      remember();
      load();
      // The stream watches one window.
      if (name === "window") startLive();
    });
  }

  replace(
    main,
    h(
      "section",
      { class: "fleet", "aria-labelledby": "fleet-title" },
      Object.assign(title, { id: "fleet-title" }),
      summary,
      h(
        "form",
        { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
        h("div", { class: "field grow" }, h("label", { for: "fleet-q" }, "Search"), search),
        h("div", { class: "field" }, h("label", { for: "fleet-status" }, "Health"), status),
        h("div", { class: "field" }, h("label", { for: "fleet-window" }, "Window"), windowSelect),
      ),
      error,
      h(
        "table",
        { class: "fleet-table" },
        h("caption", { class: "visually-hidden" }, "Devices, worst experience health first"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col" }, "Health"),
            h("th", { scope: "col" }, "Device"),
            h("th", { scope: "col" }, "Connection"),
            h("th", { scope: "col" }, "Components"),
            h("th", { scope: "col" }, "Latest negative feedback"),
          ),
        ),
        body,
      ),
      pager,
    ),
  );
  if (focus) title.focus();
  load();
  let stopLive;
  function startLive() {
    stopLive?.();
    stopLive = live(`api/live/fleet${query({ window: state.window })}`, { fleet: () => load() }, setLive);
  }
  startLive();
  return {
    stop() {
      stopLive();
      controller?.abort();
      clearTimeout(searchTimer);
    },
  };
}
