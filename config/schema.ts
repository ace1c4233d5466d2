import os from "node:os";
import { z } from "zod";
import { isAddressOrSubnet } from "./addresses.ts";
import { parseDuration } from "./duration.ts";

const portMsg = "expected a port number from 0 to 65535 (0 picks a free port)";
const port = z.coerce.number({ error: portMsg }).int(portMsg).min(0, portMsg).max(65535, portMsg);
const intMsg = "expected a positive whole number";
const positiveInt = z.coerce.number({ error: intMsg }).int(intMsg).positive(intMsg);
const durationMsg = "expected a duration such as 90s, 15m, 12h or 30d";
/** "30d" -> milliseconds. */
const duration = z.string({ error: durationMsg }).transform((text, ctx) => {
  const ms = parseDuration(text.trim());
  if (ms === undefined) {
    ctx.addIssue({ code: "custom", message: durationMsg });
    return z.NEVER;
  }
  return ms;
});
const numMsg = "expected a positive number";
const positiveNumber = z.coerce.number({ error: numMsg }).positive(numMsg);

/**
 * What one client may cost the broker. Each limit is refused with a log line
 * naming the device and the reason; the defaults suit devices and apps that
 * send a few messages a second.
 */
const mqttLimits = z
  .object({
    /** Largest PUBLISH payload; a packet announcing more than this (plus 4 KiB of header room) is cut off before it is buffered. */
    maxPayloadBytes: positiveInt.max(64 * 1024 * 1024).default(64 * 1024),
    /** Sustained publishes per second per device (all its connections together): a token bucket. */
    publishRate: positiveNumber.max(1_000_000).default(50),
    /** Publishes a device may send at once before the rate applies. */
    publishBurst: positiveInt.max(1_000_000).default(200),
    /** Open connections over all listeners (TCP, TLS, WebSocket), authenticated or not. */
    maxConnections: positiveInt.max(1_000_000).default(10_000),
    /** Time from TCP accept to a complete CONNECT (slow-loris guard); also the TLS handshake timeout. */
    connectTimeoutMs: positiveInt.max(600_000).default(10_000),
    /** Longest keepalive a client may ask for; 0 (no keepalive) is refused too, or a dead link would stay "online". */
    maxKeepaliveSeconds: positiveInt.max(65_535).default(900),
    /** Topic filters one connection may hold. */
    maxSubscriptions: positiveInt.max(10_000).default(16),
    /** QoS 1 messages kept for one persistent session (clean session off) while it is offline; the oldest go first. */
    maxQueuedMessages: positiveInt.max(1_000_000).default(100),
  })
  .prefault({});

/**
 * Connections that have not finished CONNECT and authentication. When a budget
 * is full, the oldest pre-auth connection is closed for the new one, so idle
 * sockets never lock authenticated devices out (see broker/admission.ts).
 */
const mqttPreAuth = z
  .object({
    /** Pre-auth connections over all addresses. */
    max: positiveInt.max(1_000_000).default(2000),
    /** Pre-auth connections from one source address (devices behind one NAT share it). */
    perAddress: positiveInt.max(1_000_000).default(256),
  })
  .prefault({});

/** `mqtts`: enabled when both a certificate and a key file are given. */
const mqttTls = z
  .object({
    port: port.default(8883),
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
  })
  .prefault({})
  .check((ctx) => {
    if ((ctx.value.cert === undefined) !== (ctx.value.key === undefined)) {
      ctx.issues.push({
        code: "custom",
        input: ctx.value,
        path: [ctx.value.cert === undefined ? "cert" : "key"],
        message: `missing: the TLS listener needs a certificate and a key (PEM files); set ${ctx.value.cert === undefined ? "REFEED_MQTT_TLS_CERT" : "REFEED_MQTT_TLS_KEY"} too`,
      });
    }
  });

/** A name of a metric or event, as ingest accepts them (see ingest/messages.ts). */
const metricName = z
  .string()
  .regex(
    /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/,
    "a metric or event name: 1-64 ASCII letters, digits, '_', '.' or '-', starting with a letter",
  );
const weightMsg = "expected a weight of 0 or more";
const weight = z.coerce.number({ error: weightMsg }).min(0, weightMsg).max(1000, weightMsg);
const shareMsg = "expected a share between 0 (exclusive) and 1";
const share = z.coerce.number({ error: shareMsg }).gt(0, shareMsg).max(1, shareMsg);
export const healthComponents = ["reliability", "performance", "sentiment", "participation", "connectivity"] as const;
export type HealthComponent = (typeof healthComponents)[number];
const weights = z.strictObject({
  reliability: weight.default(1),
  performance: weight.default(1),
  // What customers say is their own verdict; the other components are signals of it.
  sentiment: weight.default(2),
  participation: weight.default(0.5),
  connectivity: weight.default(1),
});

/** A kind's overrides: only the weights it names (no defaults, or they would undo the global ones). */
const kindWeights = z.strictObject(
  Object.fromEntries(healthComponents.map((c) => [c, weight.optional()])) as Record<
    HealthComponent,
    z.ZodOptional<typeof weight>
  >,
);

/**
 * Experience health (docs/health.md): what each component measures, its
 * target, and how much it weighs in a device's score.
 */
const health = z
  .object({
    /** The window a score looks back over. */
    window: duration.prefault("7d"),
    weights: weights.prefault({}),
    /**
     * Weights per device kind, over the defaults: e.g. `{"phone-app": {connectivity: 0}}` for apps
     * that connect only while they are in use. Config file only.
     */
    kinds: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, "a device kind"), kindWeights).default({}),
    /** Telemetry metric with a latency in milliseconds (performance). */
    latencyMetric: metricName.default("latency_ms"),
    /** Apdex target T: a sample up to T is satisfied, up to 4T tolerated. */
    latencyTargetMs: positiveNumber.max(3_600_000).default(500),
    /** Event that starts a customer session (reliability counts per session). */
    sessionEvent: metricName.default("session_start"),
    /** Event that reports an error, and a telemetry metric that counts errors (summed). */
    errorEvent: metricName.default("error"),
    errorMetric: metricName.default("errors"),
    crashEvent: metricName.default("crash"),
    /** Errors per session (per day without sessions) at which reliability reaches 0. */
    errorsPerSession: positiveNumber.max(1_000_000).default(1),
    /** Crashes per session (per day without sessions) at which reliability reaches 0. */
    crashesPerSession: positiveNumber.max(1_000_000).default(0.25),
    /** Feedback text sentiment (AFINN comparative) that counts as fully positive; its negative, fully negative. */
    sentimentSpan: positiveNumber.max(5).default(1),
    /** Online share of the window that gives full connectivity. */
    onlineTarget: share.default(0.95),
    /** Unexpected disconnects per day at which connectivity reaches 0. */
    dropsPerDay: positiveNumber.max(1_000_000).default(10),
    /**
     * The fleet's health is a view: devices with news are scored again at most this often,
     * the whole fleet every `fullRefreshMs`. 0: no view, every call scores the whole fleet.
     */
    refreshMs: z.coerce.number({ error: intMsg }).int(intMsg).min(0, intMsg).max(3_600_000, intMsg).default(2000),
    fullRefreshMs: positiveInt.min(10_000).max(86_400_000).default(300_000),
    /** How often open dashboards are checked for news (live updates). */
    liveIntervalMs: positiveInt.min(200).max(600_000).default(2000),
  })
  .prefault({});

/** A comma-separated list in the environment; each an IP address or a subnet. */
const trustedProxies = z
  .preprocess(
    (v) =>
      typeof v === "string"
        ? v
            .split(",")
            .map((s) => s.trim())
            .filter(Boolean)
        : v,
    z.array(
      z.string().refine(isAddressOrSubnet, "expected IP addresses or subnets such as 10.0.0.0/8, comma-separated"),
    ),
  )
  .default([]);

/**
 * The whole platform configuration. Every part receives its own slice of this,
 * already validated, so nothing downstream re-checks shapes.
 */
export const configSchema = z
  .object({
    mqtt: z
      .object({
        port: port.default(1883),
        host: z.string().min(1).default("0.0.0.0"),
        tls: mqttTls,
        limits: mqttLimits,
        preAuth: mqttPreAuth,
        /** Balancers (addresses or subnets) whose TCP connections may start with a PROXY protocol v1 header. */
        trustedProxies,
      })
      .prefault({}),
    http: z
      .object({
        port: port.default(8080),
        host: z.string().min(1).default("0.0.0.0"),
        /** Time from accept to the end of a request's headers (slow-loris guard): Node's `server.headersTimeout`. */
        headersTimeoutMs: positiveInt.max(600_000).default(10_000),
        /** Time to receive a whole request, body included; streamed responses (SSE, WebSocket) are not cut by it. */
        requestTimeoutMs: positiveInt.max(3_600_000).default(30_000),
        /** How long an idle keep-alive connection stays open between requests. */
        keepAliveTimeoutMs: positiveInt.max(600_000).default(72_000),
        /** Largest request body; a larger one is answered 413. */
        bodyLimitBytes: positiveInt.max(64 * 1024 * 1024).default(1024 * 1024),
        /** Balancers (addresses or subnets) whose X-Forwarded-For is believed: the client's address is the one it names. */
        trustedProxies,
        /**
         * Unset: /metrics is open, as Prometheus expects on a private network. Set: it wants this bearer token,
         * its own so a scraper's configuration never holds a token that can change anything.
         */
        metricsToken: z.string().min(16, "at least 16 characters").optional(),
      })
      .prefault({})
      .check((ctx) => {
        // Node refuses a headers timeout longer than the request timeout.
        if (ctx.value.headersTimeoutMs > ctx.value.requestTimeoutMs) {
          ctx.issues.push({
            code: "custom",
            input: ctx.value,
            path: ["headersTimeoutMs"],
            message: `must not be longer than the request timeout (${ctx.value.requestTimeoutMs} ms)`,
          });
        }
      }),
    influx: z
      .object({
        /** Unset: Refeed starts and supervises a local influxd under dataDir. */
        url: z.url({ protocol: /^https?$/, error: "expected an http(s) URL such as http://localhost:8086" }).optional(),
        db: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,64}$/, "letters, digits, '_' or '-' (1-64)")
          .default("refeed"),
        influxdPath: z.string().min(1).default("influxd"),
        /** How long start-up waits for a configured InfluxDB to answer (it may be starting beside us). */
        connectTimeoutMs: positiveInt.max(600_000).default(30_000),
      })
      .prefault({}),
    dataDir: z.string().min(1).default("./data"),
    /** The views' snapshot in the data dir, from which a single node starts while InfluxDB is unreachable. */
    snapshot: z
      .object({
        /** How often a changed snapshot is written (and at shutdown). */
        every: duration.prefault("10s"),
        /** With a verified snapshot, how long start-up waits for InfluxDB before it starts from the snapshot. */
        startWait: duration.prefault("5s"),
      })
      .prefault({}),
    rulesDir: z.string().min(1).optional(),
    adminToken: z.string().min(16, "at least 16 characters").optional(),
    logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
    rules: z
      .object({
        /** At most one prompt (suggestion, rating request) per this many sessions of a customer. */
        promptEverySessions: positiveInt.max(1000).default(10),
        /** A declined suggestion is not offered again for this long. */
        declineBackoff: duration.prefault("30d"),
        /** A suggestion nobody answered expires after this long. */
        suggestionTtl: duration.prefault("7d"),
        /** Static cost bound of one CEL expression. */
        maxCost: positiveInt.max(1_000_000).default(5000),
        /** How far back count windows (last N sessions/events) are warmed at start. */
        warmupMaxAge: duration.prefault("90d"),
      })
      .prefault({}),
    subjects: z
      .object({
        /** A shared device's session with a customer ends after this long when its session_end never arrives. */
        sessionTtl: duration.prefault("1h"),
      })
      .prefault({}),
    health,
    ingest: z
      .object({
        /** InfluxDB's guidance is 5,000-10,000 points per write request. */
        batchSize: positiveInt.max(100_000).default(5000),
        /** A batch's age limit; it bounds how long a QoS 1 PUBACK waits when traffic is light. */
        flushMs: positiveInt.max(60_000).default(200),
        /** Write requests to InfluxDB under way at once. */
        maxInFlight: positiveInt.max(64).default(4),
        /** Cut batches waiting for a write slot before further ones go to the spool (bounds memory). */
        maxQueuedBatches: positiveInt.max(1000).default(8),
        /** A write slower than this counts as an outage; the batch goes to the spool. */
        writeTimeoutMs: positiveInt.max(600_000).default(10_000),
        /** How far ahead of the platform clock a device's `ts` may be. */
        maxFutureSkewMs: z.coerce
          .number({ error: intMsg })
          .int(intMsg)
          .min(0, intMsg)
          .max(366 * 86_400_000)
          .default(300_000),
        /** Records in one publish (an array payload). */
        maxRecords: positiveInt.max(10_000).default(500),
        /** Metrics per telemetry record, props per event. */
        maxFields: positiveInt.max(1000).default(64),
        /** Bytes of one publish or HTTP ingest body. */
        maxPayloadBytes: positiveInt.max(16 * 1024 * 1024).default(64 * 1024),
        /** The disk spool (under the data dir) that holds batches while InfluxDB is unreachable. */
        spoolMaxBytes: positiveInt.default(1024 * 1024 * 1024),
        spoolSegmentBytes: positiveInt.default(16 * 1024 * 1024),
      })
      .prefault({}),
    /** Set: this process is a node of a cluster on this Redis (the broker, the change feed, leases). */
    redis: z
      .object({
        url: z
          .url({ protocol: /^rediss?$/, error: "expected a redis:// URL such as redis://localhost:6379" })
          .optional(),
      })
      .prefault({}),
    /** This node's name in a cluster (its Redis connections, leases and logs carry it). */
    nodeId: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/, "letters, digits, '_', '.' or '-' (1-64)")
      .default(
        () =>
          `${os
            .hostname()
            .replace(/[^A-Za-z0-9_.-]/g, "-")
            .slice(0, 50)}-${process.pid}`,
      ),
  })
  .superRefine((config, ctx) => {
    // Each node would generate its own admin token; the nodes of one platform must agree on one.
    if (config.redis.url && !config.adminToken)
      ctx.issues.push({
        code: "custom",
        input: config.adminToken,
        path: ["adminToken"],
        message:
          "REFEED_ADMIN_TOKEN is required in cluster mode (REFEED_REDIS_URL set): every node must accept the same token",
      });
  });

export type Config = z.infer<typeof configSchema>;
export type MqttConfig = Config["mqtt"];
export type MqttLimits = MqttConfig["limits"];
export type HttpConfig = Config["http"];
export type InfluxConfig = Config["influx"];
export type IngestConfig = Config["ingest"];
export type RulesSettings = Config["rules"];
export type HealthConfig = Config["health"];
export type HealthWeights = HealthConfig["weights"];

/**
 * Environment variable -> config path. The variable names are the operator
 * interface of DESIGN.md; error messages name the variable, not the path.
 */
export const envVars: Record<string, readonly string[]> = {
  REFEED_MQTT_PORT: ["mqtt", "port"],
  REFEED_MQTT_HOST: ["mqtt", "host"],
  REFEED_MQTT_TLS_PORT: ["mqtt", "tls", "port"],
  REFEED_MQTT_TLS_CERT: ["mqtt", "tls", "cert"],
  REFEED_MQTT_TLS_KEY: ["mqtt", "tls", "key"],
  REFEED_MQTT_MAX_PAYLOAD_BYTES: ["mqtt", "limits", "maxPayloadBytes"],
  REFEED_MQTT_PUBLISH_RATE: ["mqtt", "limits", "publishRate"],
  REFEED_MQTT_PUBLISH_BURST: ["mqtt", "limits", "publishBurst"],
  REFEED_MQTT_MAX_CONNECTIONS: ["mqtt", "limits", "maxConnections"],
  REFEED_MQTT_CONNECT_TIMEOUT_MS: ["mqtt", "limits", "connectTimeoutMs"],
  REFEED_MQTT_MAX_KEEPALIVE_S: ["mqtt", "limits", "maxKeepaliveSeconds"],
  REFEED_MQTT_MAX_SUBSCRIPTIONS: ["mqtt", "limits", "maxSubscriptions"],
  REFEED_MQTT_MAX_QUEUED_MESSAGES: ["mqtt", "limits", "maxQueuedMessages"],
  REFEED_MQTT_PRE_AUTH_MAX: ["mqtt", "preAuth", "max"],
  REFEED_MQTT_PRE_AUTH_PER_ADDRESS: ["mqtt", "preAuth", "perAddress"],
  REFEED_MQTT_TRUSTED_PROXIES: ["mqtt", "trustedProxies"],
  REFEED_HTTP_PORT: ["http", "port"],
  REFEED_HTTP_HOST: ["http", "host"],
  REFEED_HTTP_HEADERS_TIMEOUT_MS: ["http", "headersTimeoutMs"],
  REFEED_HTTP_REQUEST_TIMEOUT_MS: ["http", "requestTimeoutMs"],
  REFEED_HTTP_KEEPALIVE_TIMEOUT_MS: ["http", "keepAliveTimeoutMs"],
  REFEED_HTTP_BODY_LIMIT_BYTES: ["http", "bodyLimitBytes"],
  REFEED_HTTP_TRUSTED_PROXIES: ["http", "trustedProxies"],
  REFEED_METRICS_TOKEN: ["http", "metricsToken"],
  REFEED_INFLUX_URL: ["influx", "url"],
  REFEED_INFLUX_DB: ["influx", "db"],
  REFEED_INFLUXD_PATH: ["influx", "influxdPath"],
  REFEED_INFLUX_CONNECT_TIMEOUT_MS: ["influx", "connectTimeoutMs"],
  REFEED_DATA_DIR: ["dataDir"],
  REFEED_SNAPSHOT_EVERY: ["snapshot", "every"],
  REFEED_SNAPSHOT_START_WAIT: ["snapshot", "startWait"],
  REFEED_RULES_DIR: ["rulesDir"],
  REFEED_ADMIN_TOKEN: ["adminToken"],
  REFEED_LOG_LEVEL: ["logLevel"],
  REFEED_RULES_PROMPT_EVERY_SESSIONS: ["rules", "promptEverySessions"],
  REFEED_RULES_DECLINE_BACKOFF: ["rules", "declineBackoff"],
  REFEED_RULES_SUGGESTION_TTL: ["rules", "suggestionTtl"],
  REFEED_RULES_MAX_COST: ["rules", "maxCost"],
  REFEED_RULES_WARMUP_MAX_AGE: ["rules", "warmupMaxAge"],
  REFEED_SESSION_TTL: ["subjects", "sessionTtl"],
  REFEED_HEALTH_WINDOW: ["health", "window"],
  REFEED_HEALTH_WEIGHT_RELIABILITY: ["health", "weights", "reliability"],
  REFEED_HEALTH_WEIGHT_PERFORMANCE: ["health", "weights", "performance"],
  REFEED_HEALTH_WEIGHT_SENTIMENT: ["health", "weights", "sentiment"],
  REFEED_HEALTH_WEIGHT_PARTICIPATION: ["health", "weights", "participation"],
  REFEED_HEALTH_WEIGHT_CONNECTIVITY: ["health", "weights", "connectivity"],
  REFEED_HEALTH_LATENCY_METRIC: ["health", "latencyMetric"],
  REFEED_HEALTH_LATENCY_TARGET_MS: ["health", "latencyTargetMs"],
  REFEED_HEALTH_SESSION_EVENT: ["health", "sessionEvent"],
  REFEED_HEALTH_ERROR_EVENT: ["health", "errorEvent"],
  REFEED_HEALTH_ERROR_METRIC: ["health", "errorMetric"],
  REFEED_HEALTH_CRASH_EVENT: ["health", "crashEvent"],
  REFEED_HEALTH_ERRORS_PER_SESSION: ["health", "errorsPerSession"],
  REFEED_HEALTH_CRASHES_PER_SESSION: ["health", "crashesPerSession"],
  REFEED_HEALTH_SENTIMENT_SPAN: ["health", "sentimentSpan"],
  REFEED_HEALTH_ONLINE_TARGET: ["health", "onlineTarget"],
  REFEED_HEALTH_DROPS_PER_DAY: ["health", "dropsPerDay"],
  REFEED_HEALTH_REFRESH_MS: ["health", "refreshMs"],
  REFEED_HEALTH_FULL_REFRESH_MS: ["health", "fullRefreshMs"],
  REFEED_HEALTH_LIVE_INTERVAL_MS: ["health", "liveIntervalMs"],
  REFEED_INGEST_BATCH_SIZE: ["ingest", "batchSize"],
  REFEED_INGEST_FLUSH_MS: ["ingest", "flushMs"],
  REFEED_INGEST_MAX_IN_FLIGHT: ["ingest", "maxInFlight"],
  REFEED_INGEST_MAX_QUEUED_BATCHES: ["ingest", "maxQueuedBatches"],
  REFEED_INGEST_WRITE_TIMEOUT_MS: ["ingest", "writeTimeoutMs"],
  REFEED_INGEST_MAX_FUTURE_SKEW_MS: ["ingest", "maxFutureSkewMs"],
  REFEED_INGEST_MAX_RECORDS: ["ingest", "maxRecords"],
  REFEED_INGEST_MAX_FIELDS: ["ingest", "maxFields"],
  REFEED_INGEST_MAX_PAYLOAD_BYTES: ["ingest", "maxPayloadBytes"],
  REFEED_SPOOL_MAX_BYTES: ["ingest", "spoolMaxBytes"],
  REFEED_SPOOL_SEGMENT_BYTES: ["ingest", "spoolSegmentBytes"],
  REFEED_REDIS_URL: ["redis", "url"],
  REFEED_NODE_ID: ["nodeId"],
};
