// Time-series charts with uPlot (loaded as a classic script: window.uPlot).
import { h } from "./dom.js";

const LINE = "#1f5fbf";
const BAND = "rgba(31, 95, 191, 0.14)";
const NEGATIVE = "#9b2c2c";
const HEIGHT = 170;
const AXES = [
  { stroke: "#444", grid: { stroke: "#eee" } },
  { stroke: "#444", grid: { stroke: "#eee" }, size: 56 },
];

/**
 * A captioned figure with one uPlot chart that follows its container's width
 * (a phone or a laptop). The figure says in words what the chart shows, for
 * those who cannot see it.
 */
function chart(container, { metric, caption, label, scales = {}, series, bands }, data) {
  const figure = h("figure", { class: "chart", "data-metric": metric }, h("figcaption", {}, ...caption));
  const plot = h("div", { class: "plot", role: "img", "aria-label": label });
  figure.append(plot);
  container.append(figure);
  const width = () => Math.max(240, plot.clientWidth);
  const options = {
    width: width(),
    height: HEIGHT,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, ...scales },
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

/** One chart per metric: the mean per bucket as a line, min to max as a band. */
export function metricChart(container, name, times, series) {
  const latest = [...series.mean].reverse().find((v) => v !== null);
  return chart(
    container,
    {
      metric: name,
      caption: [
        h("strong", {}, name),
        latest === undefined
          ? ""
          : ` latest mean ${format(latest)}; range ${format(min(series.min))} to ${format(max(series.max))}`,
      ],
      label: `${name} over time: mean per interval with its minimum and maximum`,
      series: [
        {},
        { label: "min", stroke: "transparent", points: { show: false } },
        { label: "max", stroke: "transparent", points: { show: false } },
        { label: "mean", stroke: LINE, width: 2, points: { show: times.length < 30 } },
      ],
      bands: [{ series: [2, 1], fill: BAND }],
    },
    [seconds(times), series.min, series.max, series.mean],
  );
}

/** Feedback over time: each text's sentiment as a point, below zero is negative. */
export function sentimentChart(container, feedback) {
  const scored = feedback.filter((f) => f.sentiment !== null).sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  const negative = scored.filter((f) => f.sentiment < 0).length;
  return chart(
    container,
    {
      metric: "sentiment",
      caption: [h("strong", {}, "feedback sentiment"), ` ${scored.length} texts, ${negative} negative`],
      label: `Sentiment of each feedback text over time: ${negative} of ${scored.length} negative`,
      scales: { y: { range: (_u, lo, hi) => [Math.min(-1, lo), Math.max(1, hi)] } },
      series: [
        {},
        { label: "sentiment", stroke: NEGATIVE, paths: () => null, points: { show: true, size: 8, fill: NEGATIVE } },
      ],
    },
    [scored.map((f) => Date.parse(f.at) / 1000), scored.map((f) => f.sentiment)],
  );
}

const min = (values) => Math.min(...values.filter((v) => v !== null));
const max = (values) => Math.max(...values.filter((v) => v !== null));
function format(n) {
  if (!Number.isFinite(n)) return "\u2013";
  return Math.abs(n) >= 100 ? String(Math.round(n)) : String(Math.round(n * 100) / 100);
}
