// Time-series charts with uPlot (loaded as a classic script: window.uPlot).
import { h } from "./dom.js";

const LINE = "#1f5fbf";
const BAND = "rgba(31, 95, 191, 0.14)";
const HEIGHT = 170;

/** Charts follow their container's width (a phone or a laptop). */
function sized(container, make) {
  const chart = make(Math.max(240, container.clientWidth));
  const observer = new ResizeObserver(() => chart.setSize({ width: Math.max(240, container.clientWidth), height: HEIGHT }));
  observer.observe(container);
  return { chart, destroy: () => (observer.disconnect(), chart.destroy()) };
}

const seconds = (ms) => ms.map((t) => t / 1000);

/**
 * One chart per metric: the mean per bucket as a line, min to max as a band.
 * The figure says in words what the chart shows, for those who cannot see it.
 */
export function metricChart(container, name, times, series) {
  const figure = h("figure", { class: "chart", "data-metric": name });
  const latest = [...series.mean].reverse().find((v) => v !== null);
  figure.append(
    h("figcaption", {}, h("strong", {}, name), latest === undefined ? "" : ` latest mean ${format(latest)}; range ${format(min(series.min))} to ${format(max(series.max))}`),
  );
  const plot = h("div", { class: "plot", role: "img", "aria-label": `${name} over time: mean per interval with its minimum and maximum` });
  figure.append(plot);
  container.append(figure);
  const data = [seconds(times), series.min, series.max, series.mean];
  const made = sized(plot, (width) =>
    new uPlot(
      {
        width,
        height: HEIGHT,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
        axes: [{ stroke: "#444", grid: { stroke: "#eee" } }, { stroke: "#444", grid: { stroke: "#eee" }, size: 56 }],
        series: [{}, { label: "min", stroke: "transparent", points: { show: false } }, { label: "max", stroke: "transparent", points: { show: false } }, { label: "mean", stroke: LINE, width: 2, points: { show: times.length < 30 } }],
        bands: [{ series: [2, 1], fill: BAND }],
      },
      data,
      plot,
    ),
  );
  return { figure, update: (t, s) => made.chart.setData([seconds(t), s.min, s.max, s.mean]), destroy: made.destroy };
}

/** Feedback over time: each text's sentiment as a point, below zero is negative. */
export function sentimentChart(container, feedback) {
  const withScore = feedback.filter((f) => f.sentiment !== null).sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  const figure = h("figure", { class: "chart", "data-metric": "sentiment" });
  const negative = withScore.filter((f) => f.sentiment < 0).length;
  figure.append(h("figcaption", {}, h("strong", {}, "feedback sentiment"), ` ${withScore.length} texts, ${negative} negative`));
  const plot = h("div", { class: "plot", role: "img", "aria-label": `Sentiment of each feedback text over time: ${negative} of ${withScore.length} negative` });
  figure.append(plot);
  container.append(figure);
  const data = [withScore.map((f) => Date.parse(f.at) / 1000), withScore.map((f) => f.sentiment)];
  const made = sized(plot, (width) =>
    new uPlot(
      {
        width,
        height: HEIGHT,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (_u, lo, hi) => [Math.min(-1, lo), Math.max(1, hi)] } },
        axes: [{ stroke: "#444", grid: { stroke: "#eee" } }, { stroke: "#444", grid: { stroke: "#eee" }, size: 56 }],
        series: [{}, { label: "sentiment", stroke: "#9b2c2c", paths: () => null, points: { show: true, size: 8, fill: "#9b2c2c" } }],
      },
      data,
      plot,
    ),
  );
  return { figure, destroy: made.destroy };
}

const min = (values) => Math.min(...values.filter((v) => v !== null));
const max = (values) => Math.max(...values.filter((v) => v !== null));
function format(n) {
  if (!Number.isFinite(n)) return "\u2013";
  return Math.abs(n) >= 100 ? String(Math.round(n)) : String(Math.round(n * 100) / 100);
}
