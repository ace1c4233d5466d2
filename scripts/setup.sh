#!/usr/bin/env bash
# Installs what Refeed needs on this machine, then the npm packages:
#   influxd (InfluxDB 1.x, Debian's `influxdb`) - the system of record, started by Refeed when REFEED_INFLUX_URL is unset
#   mosquitto_pub / mosquitto_sub (Debian's `mosquitto-clients`) - the README walk-through and the tests use them as independent MQTT peers
#   openssl (Debian's `openssl`) - the TLS listener's test makes a throwaway certificate with it
#   redis-server (Debian's `redis-server`, Redis 7) - cluster mode's broker cluster, change feed and leases; the cluster tests start their own
#   haproxy (Debian's `haproxy`) - `npm run cluster` puts it in front of the nodes for MQTT and HTTP
#   chromium (Debian's `chromium`, and `fonts-liberation` for legible screenshots) - the dashboard's browser tests drive it with playwright-core
#   libmosquitto-dev and python3-paho-mqtt (Debian's) - the C and Python devices of examples/devices/, built and run by the tests
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v influxd >/dev/null 2>&1 || [ -x /usr/bin/influxd ] || need+=(influxdb)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ -x /usr/bin/chromium ] || need+=(chromium fonts-liberation)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
[ -f /usr/include/mosquitto.h ] || need+=(libmosquitto-dev)
/usr/bin/python3 -c 'import paho.mqtt' >/dev/null 2>&1 || need+=(python3-paho-mqtt)

if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "setup: installing ${need[*]} (Debian/Ubuntu packages)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: missing ${need[*]} and this is not a Debian/Ubuntu machine." >&2
    echo "setup: run 'docker compose up -d influxdb' and start Refeed with REFEED_INFLUX_URL=http://localhost:8086" >&2
  fi
fi

npm install --no-fund --no-audit
