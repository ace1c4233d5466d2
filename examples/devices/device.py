#!/usr/bin/python3
"""A Refeed device in Python with paho-mqtt (Debian's python3-paho-mqtt), from the README's contract.

It is given its identity (it provisions nothing): REFEED_DEVICE_ID and REFEED_DEVICE_TOKEN, and the
broker as REFEED_HOST (localhost) and REFEED_PORT (1883). It publishes a temperature reading every
REFEED_INTERVAL_MS (5000), takes each action once (de-duplicated by id), applies and acks it, and
prints its retained state whenever it changes. SIGINT or SIGTERM disconnect cleanly.

    REFEED_DEVICE_ID=tv-livingroom REFEED_DEVICE_TOKEN=rfd.... /usr/bin/python3 device.py
"""
import json
import os
import random
import signal
import socket
import sys
import time
from collections import OrderedDict

import paho.mqtt.client as mqtt

DEVICE = os.environ["REFEED_DEVICE_ID"]
TOKEN = os.environ["REFEED_DEVICE_TOKEN"]
HOST = os.environ.get("REFEED_HOST", "localhost")
PORT = int(os.environ.get("REFEED_PORT", "1883"))
INTERVAL = int(os.environ.get("REFEED_INTERVAL_MS", "5000")) / 1000
TOPIC = f"devices/{DEVICE}/"

# CONNACK return codes as the README names them; 1, 2, 4 and 5 will not change by retrying.
REFUSED = {1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
           4: "bad user name or password", 5: "not authorised"}
FINAL = {1, 2, 4, 5}


def say(*parts):
    print(*parts, flush=True)


class Seen:
    """The ids of actions already handled, the newest 1000: an action can arrive more than once
    (a PUBACK lost with the connection, two connections of one device), and must be applied once."""

    def __init__(self, limit=1000):
        self.ids = OrderedDict()
        self.limit = limit

    def first_time(self, action_id):
        if action_id in self.ids:
            return False
        self.ids[action_id] = True
        while len(self.ids) > self.limit:
            self.ids.popitem(last=False)
        return True


seen = Seen()
profile = {}
arrived = []  # actions taken off the wire, acked only after the loop has sent their PUBACK
refused = None
stopping = False

# Session state survives reconnects: clean_session=False keeps queued actions at the broker; the
# client id is the device id; MQTT 3.1.1 is what the broker speaks.
client = mqtt.Client(client_id=DEVICE, clean_session=False, protocol=mqtt.MQTTv311)
client.username_pw_set(DEVICE, TOKEN)


def on_connect(client, userdata, flags, rc):
    global refused
    if rc != 0:
        say(f"refused: {REFUSED.get(rc, rc)} (CONNACK {rc})")
        if rc in FINAL:
            refused = rc
        return
    # A device publishing a few times a second waits 20-40 ms more per PUBACK with Nagle on.
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    say(f"connected to {HOST}:{PORT} as {DEVICE}")
    # Subscribing (again) also makes the platform resend every action still pending for this device.
    client.subscribe([(TOPIC + "actions", 1), (TOPIC + "state", 1)])


def on_message(client, userdata, msg):
    if msg.topic == TOPIC + "state":
        if not msg.payload:
            return
        state = json.loads(msg.payload)
        profile.clear()
        profile.update(state.get("profile", {}))
        say("state", json.dumps(state["profile"], separators=(",", ":")))
        return
    action = json.loads(msg.payload)
    if not seen.first_time(action["id"]):
        say("duplicate", action["id"], "ignored")
        return
    # paho calls this before it writes the PUBACK: an ack published here would reach the platform
    # first and the action would never be recorded as delivered. Ack after the loop has run.
    arrived.append(action)


def handle(action):
    kind, key = action["kind"], action["key"]
    if kind == "set":
        profile[key] = action.get("value")
        status = "applied"
    elif kind == "clear":
        profile.pop(key, None)
        status = "applied"
    elif kind == "suggest":
        # A real device would show action["prompt"] and wait for the customer; this one declines.
        status = "declined"
    else:
        status = "failed"
    say("action", action["id"], kind, key, json.dumps(action.get("value")), status)
    ack = {"action": action["id"], "status": status}
    client.publish(TOPIC + "acks", json.dumps(ack), qos=1)


def backoff(attempt):
    """Exponential backoff with full jitter, so a fleet that lost the platform does not come back in one wave."""
    return random.uniform(0.25, min(30.0, 0.5 * 2 ** attempt))


def stop(signum, frame):
    global stopping
    stopping = True


client.on_connect = on_connect
client.on_message = on_message
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)

attempt = 0
next_reading = 0.0
connected = False
while not stopping and refused is None:
    if not connected:
        try:
            client.connect(HOST, PORT, keepalive=60)
            connected = True
        except OSError as err:
            delay = backoff(attempt)
            attempt += 1
            say(f"cannot connect ({err}); again in {delay:.1f} s")
            time.sleep(delay)
            continue
        attempt = 0
    rc = client.loop(timeout=0.05)
    if rc != mqtt.MQTT_ERR_SUCCESS:
        connected = False
        if refused is None and not stopping:
            delay = backoff(attempt)
            attempt += 1
            say(f"connection lost ({mqtt.error_string(rc)}); again in {delay:.1f} s")
            time.sleep(delay)
        continue
    for action in arrived:
        handle(action)
    arrived.clear()
    if time.monotonic() >= next_reading and client.is_connected():
        reading = {"ts": int(time.time() * 1000), "metrics": {"temp": 35.0, "latency_ms": 80}}
        client.publish(TOPIC + "telemetry", json.dumps(reading), qos=1)
        next_reading = time.monotonic() + INTERVAL

if refused is not None:
    sys.exit(2)
client.disconnect()
client.loop(timeout=0.5)
say("stopped")
