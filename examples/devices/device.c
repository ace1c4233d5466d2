/*
 * A Refeed device in C with libmosquitto (Debian's libmosquitto-dev), from the README's contract.
 *
 *   cc -O2 -Wall -o device device.c -lmosquitto
 *   REFEED_DEVICE_ID=tv-livingroom REFEED_DEVICE_TOKEN=rfd.... ./device
 *
 * It is given its identity (it provisions nothing): REFEED_DEVICE_ID and REFEED_DEVICE_TOKEN, and the
 * broker as REFEED_HOST (localhost) and REFEED_PORT (1883). It publishes a temperature reading every
 * REFEED_INTERVAL_MS (5000), takes each action once (de-duplicated by id), applies and acks it, and
 * prints its retained state whenever it changes. SIGINT or SIGTERM disconnect cleanly.
 *
 * No JSON library: the platform's payloads are small and flat where this reads them (the top-level
 * "id", "kind", "key" and "value" of an action, "profile" of the state), so a top-level key scanner
 * is enough; a product would use its JSON library.
 */
#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEEN_MAX 1000
#define PENDING_MAX 64

static char device[65];
static char topic_actions[128], topic_state[128], topic_acks[128], topic_telemetry[128];
static volatile sig_atomic_t stopping = 0;
static int refused = 0;
static int attempt = 0; /* reconnect attempts since the last CONNACK */

/* CONNACK return codes as the README names them; 1, 2, 4 and 5 will not change by retrying. */
static const char *connack_reason(int rc) {
  switch (rc) {
    case 1: return "unacceptable protocol version";
    case 2: return "identifier rejected";
    case 3: return "server unavailable";
    case 4: return "bad user name or password";
    case 5: return "not authorised";
    default: return "refused";
  }
}

/*
 * The ids of actions already handled, the newest SEEN_MAX, in a ring: an action can arrive more than
 * once (a PUBACK lost with the connection, two connections of one device) and must be applied once.
 * Action ids are at most 64 characters of [A-Za-z0-9_-].
 */
static char seen[SEEN_MAX][65];
static int seen_next = 0, seen_count = 0;

static int first_time(const char *id) {
  for (int i = 0; i < seen_count; i++)
    if (strcmp(seen[i], id) == 0) return 0;
  snprintf(seen[seen_next], sizeof seen[0], "%s", id);
  seen_next = (seen_next + 1) % SEEN_MAX;
  if (seen_count < SEEN_MAX) seen_count++;
  return 1;
}

/* Skips one JSON value starting at p (string, number, literal, object or array); returns what follows. */
static const char *skip_value(const char *p) {
  int depth = 0;
  do {
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    if (*p == '"') {
      for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1]) p++;
      if (*p) p++;
    } else if (*p == '{' || *p == '[') {
      depth++;
      p++;
    } else if (*p == '}' || *p == ']') {
      depth--;
      p++;
    } else if (*p == ',' || *p == ':') {
      p++;
    } else if (*p) {
      while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ') p++;
    }
  } while (depth > 0 && *p);
  return p;
}

/* The raw text of a top-level key's value in a JSON object (quotes kept for strings), or 0 if absent. */
static int top_level(const char *json, const char *key, char *out, size_t size) {
  const char *p = strchr(json, '{');
  if (!p) return 0;
  p++;
  for (;;) {
    while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    if (*p != '"') return 0;
    const char *name = ++p;
    while (*p && *p != '"') p++;
    size_t len = (size_t)(p - name);
    if (!*p) return 0;
    p++;
    while (*p == ' ' || *p == ':') p++;
    const char *end = skip_value(p);
    if (len == strlen(key) && strncmp(name, key, len) == 0) {
      size_t n = (size_t)(end - p);
      if (n >= size) n = size - 1;
      memcpy(out, p, n);
      out[n] = 0;
      return 1;
    }
    p = end;
    if (*p != ',') return 0;
  }
}

/* A top-level string value without its quotes (the contract's ids and keys need no unescaping). */
static int top_level_string(const char *json, const char *key, char *out, size_t size) {
  char raw[512];
  if (!top_level(json, key, raw, sizeof raw) || raw[0] != '"') return 0;
  size_t n = strlen(raw);
  if (n < 2) return 0;
  if (n - 2 >= size) return 0;
  memcpy(out, raw + 1, n - 2);
  out[n - 2] = 0;
  return 1;
}

/* Actions taken off the wire, acked only after the loop has sent their PUBACK. */
static char pending[PENDING_MAX][4096];
static int pending_count = 0;

static void on_connect(struct mosquitto *mosq, void *obj, int rc) {
  (void)obj;
  if (rc != 0) {
    printf("refused: %s (CONNACK %d)\n", connack_reason(rc), rc);
    fflush(stdout);
    if (rc != 3) refused = rc;
    return;
  }
  attempt = 0;
  printf("connected as %s\n", device);
  fflush(stdout);
  /* Subscribing (again) also makes the platform resend every action still pending for this device. */
  char *topics[] = {topic_actions, topic_state};
  mosquitto_subscribe_multiple(mosq, NULL, 2, topics, 1, 0, NULL);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg) {
  (void)mosq;
  (void)obj;
  char payload[4096];
  int n = msg->payloadlen < (int)sizeof payload - 1 ? msg->payloadlen : (int)sizeof payload - 1;
  memcpy(payload, msg->payload, (size_t)n);
  payload[n] = 0;
  if (strcmp(msg->topic, topic_state) == 0) {
    char profile[2048];
    if (n > 0 && top_level(payload, "profile", profile, sizeof profile)) printf("state %s\n", profile);
    fflush(stdout);
    return;
  }
  char id[65];
  if (!top_level_string(payload, "id", id, sizeof id)) {
    printf("unreadable action: %s\n", payload);
    return;
  }
  if (!first_time(id)) {
    printf("duplicate %s ignored\n", id);
    fflush(stdout);
    return;
  }
  /* Not acked here: the ack must not overtake this message's PUBACK, or the platform never records
   * the action as delivered. The loop writes the PUBACK; the ack goes after it returns. */
  if (pending_count < PENDING_MAX) memcpy(pending[pending_count++], payload, (size_t)n + 1);
}

static void handle(struct mosquitto *mosq, const char *action) {
  char id[65] = "", kind[16] = "", key[128] = "", value[256] = "null";
  top_level_string(action, "id", id, sizeof id);
  top_level_string(action, "kind", kind, sizeof kind);
  top_level_string(action, "key", key, sizeof key);
  top_level(action, "value", value, sizeof value);
  /* A set or clear is applied; a real device would show a suggestion's prompt and wait, this one declines. */
  const char *status = strcmp(kind, "set") == 0 || strcmp(kind, "clear") == 0 ? "applied"
                       : strcmp(kind, "suggest") == 0                         ? "declined"
                                                                              : "failed";
  printf("action %s %s %s %s %s\n", id, kind, key, value, status);
  fflush(stdout);
  char ack[160];
  snprintf(ack, sizeof ack, "{\"action\":\"%s\",\"status\":\"%s\"}", id, status);
  mosquitto_publish(mosq, NULL, topic_acks, (int)strlen(ack), ack, 1, false);
}

static void stop(int sig) {
  (void)sig;
  stopping = 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Exponential backoff with full jitter, so a fleet that lost the platform does not come back in one wave. */
static void backoff(int attempt) {
  double ceiling = 0.5 * (double)(1 << (attempt < 6 ? attempt : 6));
  if (ceiling > 30) ceiling = 30;
  double delay = 0.25 + (ceiling - 0.25) * ((double)rand() / RAND_MAX);
  printf("connection lost; again in %.1f s\n", delay);
  fflush(stdout);
  usleep((useconds_t)(delay * 1e6));
}

int main(void) {
  const char *id = getenv("REFEED_DEVICE_ID"), *token = getenv("REFEED_DEVICE_TOKEN");
  const char *host = getenv("REFEED_HOST") ? getenv("REFEED_HOST") : "localhost";
  int port = getenv("REFEED_PORT") ? atoi(getenv("REFEED_PORT")) : 1883;
  double interval = (getenv("REFEED_INTERVAL_MS") ? atof(getenv("REFEED_INTERVAL_MS")) : 5000) / 1000;
  if (!id || !token || strlen(id) > 64) {
    fprintf(stderr, "set REFEED_DEVICE_ID and REFEED_DEVICE_TOKEN (from provisioning)\n");
    return 1;
  }
  snprintf(device, sizeof device, "%s", id);
  snprintf(topic_actions, sizeof topic_actions, "devices/%s/actions", id);
  snprintf(topic_state, sizeof topic_state, "devices/%s/state", id);
  snprintf(topic_acks, sizeof topic_acks, "devices/%s/acks", id);
  snprintf(topic_telemetry, sizeof topic_telemetry, "devices/%s/telemetry", id);
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  signal(SIGINT, stop);
  signal(SIGTERM, stop);

  mosquitto_lib_init();
  /* The client id is the device id; clean session off keeps actions queued for it while it is away. */
  struct mosquitto *mosq = mosquitto_new(id, false, NULL);
  mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  /* A device publishing a few times a second waits 20-40 ms more per PUBACK with Nagle on. */
  mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_username_pw_set(mosq, id, token);
  mosquitto_connect_callback_set(mosq, on_connect);
  mosquitto_message_callback_set(mosq, on_message);

  int first = 1, connected = 0;
  double next_reading = 0;
  while (!stopping && !refused) {
    if (!connected) {
      int rc = first ? mosquitto_connect(mosq, host, port, 60) : mosquitto_reconnect(mosq);
      first = 0;
      if (rc != MOSQ_ERR_SUCCESS) {
        backoff(attempt++);
        continue;
      }
      connected = 1;
    }
    int rc = mosquitto_loop(mosq, 50, 1);
    if (rc != MOSQ_ERR_SUCCESS) {
      connected = 0;
      if (!refused && !stopping) backoff(attempt++);
      continue;
    }
    for (int i = 0; i < pending_count; i++) handle(mosq, pending[i]);
    pending_count = 0;
    if (now_s() >= next_reading) {
      char reading[128];
      struct timespec wall;
      clock_gettime(CLOCK_REALTIME, &wall);
      long long ts = (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
      snprintf(reading, sizeof reading, "{\"ts\":%lld,\"metrics\":{\"temp\":35.0,\"latency_ms\":80}}", ts);
      mosquitto_publish(mosq, NULL, topic_telemetry, (int)strlen(reading), reading, 1, false);
      next_reading = now_s() + interval;
    }
  }
  if (refused) return 2;
  mosquitto_disconnect(mosq);
  mosquitto_loop(mosq, 500, 1);
  mosquitto_destroy(mosq);
  mosquitto_lib_cleanup();
  printf("stopped\n");
  return 0;
}
