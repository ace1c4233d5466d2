// Time-series charts with uPlot (loaded as a classic script: window.uPlot).
import { h } from "./dom.js";

const LINE = "#1f5fbf";
const BAND = "rgba(31, 95, 191, 0.14)";
const NEGATIVE = "#9b2c2c";
const POSITIVE = "#1e6b3a";
const NEUTRAL = "#666";
const HEIGHT = 170;
const AXES = [
  { stroke: "#444", grid: { stroke: "#eee" } },
  { stroke: "#444", grid: { stroke: "#eee" }, size: 56 },
];

/**
 * The bucket the device view asks for: the shortest of the API's buckets that gives at most 360 over the
 * range, so a line over 24 hours has a point every 5 minutes instead of two over a short history.
 */
const BUCKETS = [
  ["10s", 10_000],
  ["30s", 30_000],
  ["1m", 60_000],
  ["5m", 300_000],
  ["10m", 600_000],
  ["15m", 900_000],
  ["30m", 1_800_000],
  ["1h", 3_600_000],
  ["3h", 10_800_000],
  ["6h", 21_600_000],
  ["12h", 43_200_000],
  ["1d", 86_400_000],
];
export function bucketFor(spanMs) {
  return (BUCKETS.find(([, ms]) => spanMs / ms <= 360) ?? BUCKETS.at(-1))[0];
}

const spoken = (ms) => {
  if (ms % 86_400_000 === 0) return ms === 86_400_000 ? "day" : `${ms / 86_400_000} days`;
  if (ms % 3_600_000 === 0) return ms === 3_600_000 ? "hour" : `${ms / 3_600_000} hours`;
  if (ms % 60_000 === 0) return ms === 60_000 ? "minute" : `${ms / 60_000} minutes`;
  return `${ms / 1000} seconds`;
};
const clock = new Intl.DateTimeFormat("en", { dateStyle: "medium", timeStyle: "short" });

/**
 * A captioned figure with one uPlot chart that follows its container's width
 * (a phone or a laptop). Every chart of the view spans the same range (`from`
 * to `to`), so a point in one lines up with the others; the figure says in
 * words what the chart shows, for those who cannot see it.
 */
function chart(container, { metric, caption, note, label, range, scales = {}, series, bands }, data) {
  const figure = h(
    "figure",
    { class: "chart", "data-metric": metric },
    h("figcaption", {}, ...caption),
    note ? h("p", { class: "chart-note" }, note) : null,
  );
  const plot = h("div", { class: "plot", role: "img", "aria-label": label });
  figure.append(plot);
  container.append(figure);
  const width = () => Math.max(240, plot.clientWidth);
  const options = {
    width: width(),
    height: HEIGHT,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true, range: () => [range.from / 1000, range.to / 1000] }, ...scales },
    axes: AXES,
    series,
    ...(bands ? { bands } : {}),
  };
  const u = new uPlot(options, data, plot);
  const observer = new ResizeObserver(() => u.setSize({ width: width(), height: HEIGHT }));
  observer.observe(plot);
  return { figure, destroy: () => (observer.disconnect(), u.destroy()) };
}

const seconds = (ms) => ms.map((t) => t / 1000);

/**
 * One chart per metric: the mean per bucket as a line, min to max as a band. A metric with no point in the
 * range (another device kind's, or one this device stopped sending) gets no chart: `metricCharts` names it.
 */
export function metricChart(container, name, times, series, { range, interval }) {
  const points = series.mean.filter((v) => v !== null).length;
  const latest = [...series.mean].reverse().find((v) => v !== null);
  const first = times[series.mean.findIndex((v) => v !== null)];
  const every = `mean per ${spoken(interval)}, shaded from minimum to maximum`;
  return chart(
    container,
    {
      metric: name,
      caption: [
        h("strong", {}, name),
        ` ${every}; latest ${format(latest)}, range ${format(min(series.min))} to ${format(max(series.max))}`,
      ],
      note:
        first !== undefined && first - range.from > (range.to - range.from) / 10
          ? `No ${name} before ${clock.format(first)}.`
          : undefined,
      label: `${name} over the ${range.label}: ${every}, ${points} ${points === 1 ? "interval" : "intervals"} with data, latest ${format(latest)}`,
      range,
      series: [
        {},
        { label: "min", stroke: "transparent", points: { show: false } },
        { label: "max", stroke: "transparent", points: { show: false } },
        { label: "mean", stroke: LINE, width: 2, points: { show: points < 30 } },
      ],
      bands: [{ series: [2, 1], fill: BAND }],
    },
    [seconds(times), series.min, series.max, series.mean],
  );
}

/** Charts for the metrics with points in the range, and one sentence for those without. */
export function metricCharts(container, telemetry, range) {
  const handles = [];
  const empty = [];
  for (const [name, series] of Object.entries(telemetry?.metrics ?? {})) {
    if (series.mean.every((v) => v === null)) empty.push(name);
    else handles.push(metricChart(container, name, telemetry.time, series, { range, interval: telemetry.interval }));
  }
  if (handles.length === 0)
    container.append(h("p", { class: "meta chart-empty" }, `No telemetry from this device in the ${range.label}.`));
  else if (empty.length > 0)
    container.append(h("p", { class: "meta chart-empty" }, `No points in the ${range.label} for ${empty.join(", ")}.`));
  return handles;
}

/**
 * Feedback over the same range: each text's sentiment as a point, green above zero, red below, grey at
 * zero, on a fixed -1 to 1 scale (beyond it when a text scores more).
 */
export function sentimentChart(container, feedback, range) {
  const scored = feedback.filter((f) => f.sentiment !== null).sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  if (scored.length === 0) {
    container.append(h("p", { class: "meta chart-empty" }, `No feedback text in the ${range.label}.`));
    return undefined;
  }
  const negative = scored.filter((f) => f.sentiment < 0).length;
  const positive = scored.filter((f) => f.sentiment > 0).length;
  const only = (keep) => scored.map((f) => (keep(f.sentiment) ? f.sentiment : null));
  const dots = (color) => ({ paths: () => null, stroke: color, points: { show: true, size: 8, fill: color } });
  return chart(
    container,
    {
      metric: "sentiment",
      caption: [
        h("strong", {}, "feedback sentiment"),
        ` each text scored from \u22121 (negative, red) to 1 (positive, green): ${scored.length} texts, ${positive} positive, ${negative} negative`,
      ],
      label: `Sentiment of each feedback text over the ${range.label}: ${negative} of ${scored.length} negative, ${positive} positive`,
      range,
      scales: { y: { range: (_u, lo, hi) => [Math.min(-1, lo ?? -1), Math.max(1, hi ?? 1)] } },
      series: [
        {},
        { label: "positive", ...dots(POSITIVE) },
        { label: "neutral", ...dots(NEUTRAL) },
        { label: "negative", ...dots(NEGATIVE) },
      ],
    },
    [scored.map((f) => Date.parse(f.at) / 1000), only((s) => s > 0), only((s) => s === 0), only((s) => s < 0)],
  );
}

const min = (values) => Math.min(...values.filter((v) => v !== null));
const max = (values) => Math.max(...values.filter((v) => v !== null));
function format(n) {
  if (n === undefined || !Number.isFinite(n)) return "\u2013";
  return Math.abs(n) >= 100 ? String(Math.round(n)) : String(Math.round(n * 100) / 100);
}
