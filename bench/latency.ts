import * as hdr from "hdr-histogram-js";

/** Latencies in microseconds, reported in milliseconds: exact percentiles to 3 significant digits. */
export function latencyHistogram() {
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
  });
  return {
    recordMs(ms: number) {
      histogram.recordValue(Math.max(1, Math.round(ms * 1000)));
    },
    get count() {
      return histogram.totalCount;
    },
    summary(): LatencySummary {
      const at = (p: number) => histogram.getValueAtPercentile(p) / 1000;
      return {
        count: histogram.totalCount,
        p50: at(50),
        p90: at(90),
        p99: at(99),
        p999: at(99.9),
        max: histogram.maxValue / 1000,
      };
    },
  };
}

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}
