/**
 * What the load generator's parent and its worker processes say to each other
 * (over the fork IPC channel), and the clock they share.
 */

/**
 * Microseconds on the machine's monotonic clock (CLOCK_MONOTONIC): the same
 * clock in every process, so a time stamped in one worker can be compared with
 * the time another worker receives the message.
 */
export const micros = (): number => Number(process.hrtime.bigint() / 1000n);

export interface ClientSpec {
  clientId: string;
  username?: string;
  password?: string;
  /** Where this client publishes during a run (none: it only listens). */
  topic?: string;
  /** Runs name the group of clients that publish (default "default"). */
  group?: string;
  /** Topic filters it subscribes to once connected, at `subscribeQos`. */
  subscribe?: string[];
}

export interface ConnectCommand {
  op: "connect";
  url: string;
  clients: ClientSpec[];
  subscribeQos: 0 | 1;
  keepaliveSeconds: number;
  /** Connections opened at once. */
  concurrency: number;
}

export interface RunCommand {
  op: "run";
  runId: number;
  /** Monotonic µs of the first scheduled send; every worker starts at the same time. */
  startAt: number;
  /** The clients that publish in this run: those with a topic in this group. */
  group: string;
  /** Publishes this worker sends per second, spread over its publishing clients in turn. */
  rate: number;
  /** Publishes this worker sends in the run. */
  total: number;
  qos: 0 | 1;
  /** Records per publish: 1 sends a JSON object, more send a JSON array (the contract's batch). */
  records: number;
  /** `temp` above the threshold rules use (30), so every record fires them. */
  hot: boolean;
  /**
   * `full`: records carry run, worker, sequence number and scheduled time
   * (for receivers); `seq`: only the sequence number, so stored points have
   * the four fields of the InfluxDB-only ceiling's points.
   */
  stamps: "full" | "seq";
  /** The customer the records are about, if any. */
  subject?: string;
  /** QoS 1 publishes a client may have unacknowledged; beyond it a send is skipped and counted. */
  maxOutstanding: number;
  /** Report per-client sent and acknowledged counts at collect (for checking storage per device). */
  perClient: boolean;
  /** Records each worker sends in this run, by worker index: receivers size their duplicate checks by it. */
  senders: number[];
}

export type Command = ConnectCommand | RunCommand | { op: "collect"; runId: number } | { op: "close" };

export interface Progress {
  op: "progress";
  runId: number;
  sent: number;
  acked: number;
  received: number;
}

export interface RunStats {
  runId: number;
  sent: number;
  acked: number;
  /** QoS 1 publishes the client could not send because too many were unacknowledged. */
  skipped: number;
  errors: number;
  /** Records received by this worker's subscribers that carry this run's stamps (each subscriber counts). */
  received: number;
  duplicates: number;
  /** Records stamped by an earlier run that arrived during this one. */
  stale: number;
  /** Compressed HDR histograms (µs): publish -> PUBACK, scheduled send -> received, scheduled -> actually sent. */
  ack: string;
  receive: string;
  lag: string;
  /** CPU time this process used from the run's start to collect, µs. */
  cpuMicros: number;
  /** The first client error or lost connection of the run, if any. */
  firstError?: string;
  perClient?: Record<string, { sent: number; acked: number }>;
}

export type Reply =
  | { op: "ready" }
  | { op: "connected"; connected: number; failed: number; firstError?: string }
  | Progress
  /** The schedule is done: what was sent and what was skipped (too many unacknowledged). */
  | { op: "sent"; runId: number; sent: number; skipped: number }
  | ({ op: "stats" } & RunStats)
  | { op: "error"; message: string };

/**
 * A record's stamps: run, worker, sequence number (from 0 in each run and
 * worker) and scheduled send time. Receivers find them in a
 * telemetry record's `metrics` or in an action's `value`.
 */
export interface Stamp {
  r: number;
  w: number;
  seq: number;
  t: number;
}
