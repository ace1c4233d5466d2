// Device view: how the device has been doing, what the platform changed on it and why, what its customers said.
import { api, ApiError, live, query } from "./api.js";
import { bucketFor, metricCharts, sentimentChart } from "./charts.js";
import { h, replace, scoreBadge, signed, time } from "./dom.js";

const COMPONENTS = [
  ["sentiment", "Sentiment"],
  ["reliability", "Reliability"],
  ["performance", "Performance"],
  ["connectivity", "Connectivity"],
  ["participation", "Participation"],
];
const TYPES = [
  ["feedback", "Feedback"],
  ["action", "Actions"],
  ["event", "Events"],
  ["presence", "Connections"],
  ["consent", "Consent"],
  ["dead_letter", "Refused messages"],
];
const RANGES = [
  ["1h", "last hour"],
  ["24h", "last 24 hours"],
  ["7d", "last 7 days"],
  ["30d", "last 30 days"],
];
const PAGE = 100;
const spanOf = (range) =>
  ({ "1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000, "30d": 2_592_000_000 })[range] ?? 86_400_000;

export function deviceView(main, id, params, { setLive, focus }) {
  const state = {
    range: params.get("range") ?? "24h",
    window: params.get("window") ?? "",
    types: new Set(
      (params.get("types") ?? TYPES.map(([t]) => t).join(",")).split(",").filter((t) => TYPES.some(([k]) => k === t)),
    ),
  };
  const entries = new Map(); // key -> entry
  let next = null;
  let after = 0;
  let stopLive;
  let chartsHandles = [];
  let telemetryTimer;
  const aborts = new AbortController();
  const get = (path) => api(path, { signal: aborts.signal });
  const path = (p) => `api/devices/${encodeURIComponent(id)}/${p}`;

  const title = h("h1", { tabindex: "-1" }, id);
  const headMeta = h("p", { class: "meta" });
  const headScore = h("div", { class: "head-score" });
  const breakdown = h("ul", { class: "components" });
  const charts = h("div", { class: "charts" });
  const list = h("ol", { class: "timeline", "aria-live": "off" });
  const more = h(
    "button",
    { type: "button", class: "quiet", hidden: true, onclick: () => loadEntries(true) },
    "Load older entries",
  );
  const notice = h("p", { class: "notice", hidden: true });
  const error = h("p", { class: "error", role: "alert" });

  const remember = () =>
    history.replaceState(
      null,
      "",
      `#/device/${encodeURIComponent(id)}${query({ range: state.range === "24h" ? "" : state.range, window: state.window, types: state.types.size === TYPES.length ? "" : [...state.types].join(",") })}`,
    );

  const rangeSelect = h(
    "select",
    { id: "device-range" },
    RANGES.map(([value, label]) => h("option", { value, selected: state.range === value }, label)),
  );
  rangeSelect.addEventListener("change", () => {
    state.range = rangeSelect.value;
    remember();
    loadCharts();
    loadEntries(false);
  });
  const windowSelect = h(
    "select",
    { id: "device-window" },
    [
      ["", "default (7 days)"],
      ["24h", "24 hours"],
      ["7d", "7 days"],
      ["30d", "30 days"],
    ].map(([value, label]) => h("option", { value, selected: state.window === value }, label)),
  );
  windowSelect.addEventListener("change", () => {
    state.window = windowSelect.value;
    remember();
    loadHealth();
    startLive();
  });
  const typeBoxes = h(
    "fieldset",
    { class: "types" },
    h("legend", {}, "Show"),
    TYPES.map(([type, label]) =>
      h(
        "label",
        { class: "check" },
        h("input", {
          type: "checkbox",
          value: type,
          checked: state.types.has(type),
          onchange: (e) => {
            if (e.target.checked) state.types.add(type);
            else state.types.delete(type);
            remember();
            loadEntries(false);
          },
        }),
        label,
      ),
    ),
  );

  function renderHealth(health) {
    title.textContent = health.device;
    replace(
      headMeta,
      [
        health.kind,
        health.subjects.length
          ? `customer${health.subjects.length > 1 ? "s" : ""} ${health.subjects.slice(0, 5).join(", ")}${health.subjects.length > 5 ? ` and ${health.subjects.length - 5} more` : ""}`
          : "no customer linked",
      ]
        .filter(Boolean)
        .join(" \u00b7 "),
      " \u00b7 ",
      h(
        "span",
        { class: `dot ${health.online ? "on" : "off"}` },
        health.online ? `online (${health.connections} connection${health.connections === 1 ? "" : "s"})` : "offline",
      ),
      ", last seen ",
      time(health.lastSeen),
      health.revoked ? " \u00b7 revoked" : "",
    );
    replace(
      headScore,
      scoreBadge(health.score, health.status, true),
      h("span", { class: "meta" }, `experience health, ${health.window}`),
    );
    replace(
      breakdown,
      COMPONENTS.map(([name, label]) => {
        const c = health.components[name];
        const status = c.score === null ? "unknown" : c.score >= 80 ? "good" : c.score >= 50 ? "fair" : "poor";
        const negative = name === "sentiment" ? health.feedback.latestNegative : null;
        return h(
          "li",
          { class: `component ${status}`, "data-component": name },
          h("h3", {}, label, " ", scoreBadge(c.score, status)),
          c.score === null
            ? null
            : h("meter", {
                min: 0,
                max: 100,
                low: 50,
                high: 80,
                optimum: 100,
                value: c.score,
                "aria-label": `${label} ${Math.round(c.score)} of 100`,
              }),
          h("p", {}, c.explanation),
          negative
            ? h(
                "figure",
                { class: "quote" },
                h("blockquote", {}, negative.text),
                h(
                  "figcaption",
                  {},
                  `latest negative: sentiment ${signed(negative.sentiment)}`,
                  negative.rating !== null ? `, rating ${negative.rating}/5` : "",
                  ", ",
                  time(negative.at),
                ),
              )
            : null,
          h("p", { class: "meta" }, c.weight === 0 ? "not counted for this kind of device" : `weight ${c.weight}`),
        );
      }),
    );
  }

  async function loadHealth() {
    try {
      renderHealth(await get(path(`health${query({ window: state.window })}`)));
    } catch (err) {
      if (err.name === "AbortError") return;
      if (err instanceof ApiError && err.status === 404) {
        replace(
          main,
          h(
            "section",
            {},
            h("h1", { tabindex: "-1" }, "No such device"),
            h("p", {}, `The platform knows no device \u201c${id}\u201d.`),
            h("a", { href: "#/" }, "Back to the fleet"),
          ),
        );
        stop();
        return;
      }
      error.textContent = `Could not load the health of ${id}: ${err.message}`;
    }
  }

  async function loadCharts() {
    try {
      const label = RANGES.find(([r]) => r === state.range)?.[1] ?? state.range;
      const [summary, feedback] = await Promise.all([
        get(
          path(`timeline${query({ last: state.range, types: "telemetry", interval: bucketFor(spanOf(state.range)) })}`),
        ),
        get(path(`timeline${query({ last: state.range, types: "feedback", limit: 1000 })}`)),
      ]);
      for (const c of chartsHandles) c.destroy();
      chartsHandles = [];
      charts.replaceChildren();
      // One range for every chart, so the sentiment of a complaint lines up with the latency beside it.
      const range = { from: Date.parse(summary.from), to: Date.parse(summary.to), label };
      const sentiment = sentimentChart(charts, feedback.entries, range);
      if (sentiment) chartsHandles.push(sentiment);
      chartsHandles.push(...metricCharts(charts, summary.telemetry, range));
    } catch (err) {
      if (err.name !== "AbortError") error.textContent = `Could not load the charts: ${err.message}`;
    }
  }

  async function loadEntries(older) {
    if (!older) {
      entries.clear();
      next = null;
    }
    const types = [...state.types];
    if (types.length === 0) {
      renderEntries();
      more.hidden = true;
      return;
    }
    try {
      const page = await get(
        path(
          `timeline${query({ last: state.range, cursor: older ? next : undefined, types: types.join(","), limit: PAGE })}`,
        ),
      );
      for (const e of page.entries) entries.set(e.key, e);
      next = page.next;
      if (!older) after = Math.max(after, page.after);
      renderEntries();
      more.hidden = next === null;
    } catch (err) {
      if (err.name !== "AbortError") error.textContent = `Could not load the timeline: ${err.message}`;
    }
  }

  function renderEntries(fresh = new Set()) {
    const shown = [...entries.values()]
      .filter((e) => state.types.has(e.type))
      .sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
    if (shown.length === 0) return replace(list, h("li", { class: "empty" }, "Nothing in this range."));
    replace(
      list,
      shown.map((e) => {
        const li = entryView(e);
        if (fresh.has(e.key)) li.classList.add("new");
        return li;
      }),
    );
  }

  function startLive() {
    stopLive?.();
    stopLive = live(
      () => `api/live/devices/${encodeURIComponent(id)}${query({ after, window: state.window })}`,
      {
        health: renderHealth,
        entries: ({ entries: news, truncated }) => {
          const fresh = new Set();
          for (const e of news) {
            after = Math.max(after, Date.parse(e.at) * 1000);
            if (!state.types.has(e.type)) continue;
            // The stream overlaps what the page has: only what is new or changed counts.
            const known = entries.get(e.key);
            if (known && JSON.stringify(known) === JSON.stringify(e)) continue;
            entries.set(e.key, e);
            fresh.add(e.key);
          }
          notice.hidden = !truncated;
          notice.textContent = truncated ? "More happened than is shown here; reload the page to see all of it." : "";
          if (fresh.size > 0) renderEntries(fresh);
          if (news.some((e) => e.type === "feedback")) scheduleCharts();
        },
        telemetry: scheduleCharts,
      },
      setLive,
    );
  }

  // New telemetry redraws the charts at most every 5 seconds.
  function scheduleCharts() {
    if (telemetryTimer) return;
    telemetryTimer = setTimeout(() => {
      telemetryTimer = undefined;
      loadCharts();
    }, 5000);
  }

  function stop() {
    stopLive?.();
    aborts.abort();
    clearTimeout(telemetryTimer);
    for (const c of chartsHandles) c.destroy();
  }

  replace(
    main,
    h(
      "article",
      { class: "device", "aria-labelledby": "device-title" },
      h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/" }, "\u2190 Fleet")),
      h(
        "header",
        { class: "device-head" },
        h("div", {}, Object.assign(title, { id: "device-title" }), headMeta),
        headScore,
      ),
      error,
      h(
        "section",
        { "aria-labelledby": "breakdown-title" },
        h(
          "div",
          { class: "section-head" },
          h("h2", { id: "breakdown-title" }, "Health breakdown"),
          h("div", { class: "field" }, h("label", { for: "device-window" }, "Window"), windowSelect),
        ),
        breakdown,
      ),
      h(
        "section",
        { "aria-labelledby": "charts-title" },
        h(
          "div",
          { class: "section-head" },
          h("h2", { id: "charts-title" }, "Metrics"),
          h("div", { class: "field" }, h("label", { for: "device-range" }, "Range"), rangeSelect),
        ),
        charts,
      ),
      h(
        "section",
        { "aria-labelledby": "timeline-title" },
        h("div", { class: "section-head" }, h("h2", { id: "timeline-title" }, "Timeline")),
        typeBoxes,
        notice,
        list,
        more,
      ),
    ),
  );
  if (focus) title.focus();
  loadHealth();
  loadCharts();
  loadEntries(false).then(startLive);
  return { stop };
}

const quoteValue = (v) => (typeof v === "string" ? `\u201c${v}\u201d` : JSON.stringify(v));

/** One timeline entry, in words a support agent reads at a glance. */
function entryView(e) {
  const base = (label, ...content) =>
    h(
      "li",
      { class: `entry ${e.type}`, "data-type": e.type, "data-key": e.key },
      h("div", { class: "when" }, h("span", { class: "badge" }, label), time(e.at)),
      h("div", { class: "what" }, ...content),
    );
  switch (e.type) {
    case "feedback": {
      const negative = (e.sentiment !== null && e.sentiment < 0) || (e.rating !== null && e.rating <= 2);
      const li = base(
        "Feedback",
        e.text ? h("blockquote", {}, e.text) : null,
        h(
          "p",
          { class: "meta" },
          [
            e.rating !== null ? `rating ${e.rating}/5` : null,
            e.sentiment !== null ? `sentiment ${signed(e.sentiment)}` : null,
            e.subject ? `customer ${e.subject}` : "no customer",
          ]
            .filter(Boolean)
            .join(" \u00b7 "),
        ),
      );
      if (negative) li.classList.add("negative");
      return li;
    }
    case "action": {
      const what =
        e.kind === "suggest"
          ? [
              "suggested ",
              h("code", {}, e.target),
              e.value !== null ? [" = ", quoteValue(e.value)] : "",
              e.prompt ? [": ", h("q", {}, e.prompt)] : "",
            ]
          : e.kind === "notify"
            ? ["notified a webhook"]
            : e.kind === "clear"
              ? ["cleared ", h("code", {}, e.target)]
              : ["set ", h("code", {}, e.target), " = ", quoteValue(e.value)];
      return base(
        "Action",
        h("p", {}, "Rule ", h("strong", {}, e.rule), " ", what, e.subject ? ` for customer ${e.subject}` : ""),
        h("p", { class: "why" }, h("span", { class: "label" }, "Why: "), e.why),
        h(
          "ol",
          { class: "lifecycle", "aria-label": "lifecycle" },
          e.lifecycle.map((step) =>
            h(
              "li",
              { class: step.status },
              step.status,
              " ",
              time(step.at),
              step.by ? ` by ${step.by}` : "",
              step.reason ? ` (${step.reason})` : "",
            ),
          ),
        ),
      );
    }
    case "event":
      return base(
        "Event",
        h("p", {}, h("strong", {}, e.name), e.subject ? ` \u00b7 customer ${e.subject}` : ""),
        Object.keys(e.props ?? {}).length
          ? h(
              "p",
              { class: "meta" },
              Object.entries(e.props)
                .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
                .join(" \u00b7 "),
            )
          : null,
      );
    case "presence":
      return base(
        "Connection",
        h(
          "p",
          {},
          e.event === "connect"
            ? `connected over ${e.transport ?? "MQTT"}`
            : e.event === "will"
              ? "last will published"
              : `disconnected: ${(e.reason ?? "unknown").replaceAll("_", " ")}`,
          e.client ? h("span", { class: "meta" }, ` client ${e.client}`) : null,
        ),
      );
    case "consent":
      return base(
        "Consent",
        h(
          "p",
          {},
          `customer ${e.subject} ${e.granted ? "opted in to" : "opted out of"} `,
          h("strong", {}, e.purpose),
          ` (recorded by ${e.by})`,
        ),
      );
    case "dead_letter":
      return base(
        "Refused",
        h("p", {}, `a ${e.channel} message: `, h("strong", {}, e.reason.replaceAll("_", " "))),
        e.detail ? h("p", { class: "meta" }, e.detail) : null,
      );
    default:
      return base(e.type, h("p", {}, JSON.stringify(e)));
  }
}
