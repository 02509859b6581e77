#!/usr/bin/env bash
# make demo — runs VoltEdge locally with the demo configuration:
#   Redis (the one on 127.0.0.1:6379 if it answers, else a private one on
#   port 6390; redis-server is installed with apt when missing and root),
#   the Lua library and the demo mappings, comsrv, simulated DTUs
#   (DTU1001..DTU1004 transparent, 5001 tlv, DEV001 line) and the other services. Ctrl-C stops everything.
# MariaDB for netsrv's history: the one on 127.0.0.1:3306 if root logs in
# without a password (database voltedge_demo), else a private mariadbd on
# port 3390 in the run directory (mariadb-server is installed with apt when
# missing and root). netsrv and modsrv run on copies of their
# configuration pointed at it.
# The console user "demo" gets a random password, printed at start: modsrv
# runs on a copy of config/modsrv.toml in the run directory with that user
# added (the shipped configuration has no user).
# Webhooks: a local receiver (webhookrecv on 127.0.0.1:8010, log in the run
# directory) with a random secret, a target for it and a rule sending
# device_offline and device_online to it; DTU1004 goes offline 20 s after the
# start, so a signed call arrives and the console's target counters show it.
# DEMO_SECONDS=N stops it after N seconds (used to check the demo unattended).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
DEMO_SECONDS=${DEMO_SECONDS:-0}
RUN=$(mktemp -d /tmp/voltedge-demo.XXXXXX)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "demo stopped; logs are in $RUN"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server…"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server redis-tools
  else
    echo "redis-server is not installed: sudo apt-get install redis-server" >&2
    exit 1
  fi
fi

REDIS_URL=${VOLTEDGE_REDIS:-redis://127.0.0.1:6379}
CLI=(redis-cli -u "$REDIS_URL")
if ! "${CLI[@]}" ping >/dev/null 2>&1; then
  REDIS_URL=redis://127.0.0.1:6390
  CLI=(redis-cli -p 6390)
  echo "no Redis answering; starting a private redis-server on port 6390"
  redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec --dir "$RUN" \
    --logfile "$RUN/redis.log" &
  pids+=($!)
  for _ in $(seq 50); do "${CLI[@]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
export VOLTEDGE_REDIS=$REDIS_URL

# MariaDB, like Redis: the shared one if it lets root in, else a private one.
if ! command -v mariadbd >/dev/null 2>&1 && ! command -v mysqld >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing mariadb-server…"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server
  else
    echo "mariadb-server is not installed: sudo apt-get install mariadb-server" >&2
    exit 1
  fi
fi
MYSQL_ADDR=127.0.0.1:3306
if ! mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; then
  MYSQL_ADDR=127.0.0.1:3390
  echo "no MariaDB letting root in on 3306; starting a private mariadbd on port 3390"
  mariadb-install-db --no-defaults --datadir="$RUN/mysql" --auth-root-authentication-method=normal \
    --skip-test-db >"$RUN/mariadb-install.log" 2>&1
  mariadbd --no-defaults --datadir="$RUN/mysql" --port=3390 --bind-address=127.0.0.1 \
    --socket="$RUN/mysql.sock" --user="$(id -un)" --skip-name-resolve >"$RUN/mariadb.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do mariadb -h 127.0.0.1 -P 3390 -u root -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
fi
mariadb -h "${MYSQL_ADDR%:*}" -P "${MYSQL_ADDR#*:}" -u root -e 'CREATE DATABASE IF NOT EXISTS voltedge_demo CHARACTER SET utf8mb4'
MYSQL_DSN="root@tcp($MYSQL_ADDR)/voltedge_demo"
sed -e "s|^dsn = .*|dsn = \"$MYSQL_DSN\"|" -e "s|^dir = .*|dir = \"$RUN/netsrv-spool\"|" config/netsrv.toml >"$RUN/netsrv.toml"

"$BIN/edgectl" lua load
"$BIN/edgectl" mappings load config/mappings/demo.toml

# The console user: a random password, its bcrypt hash in the run
# directory's copy of modsrv.toml.
DEMO_PASSWORD=$(head -c 15 /dev/urandom | base64 | tr '+/' 'xy')
DEMO_HASH=$(printf '%s\n' "$DEMO_PASSWORD" | "$BIN/modsrv" -hash-password)
sed -e "s|^mysql_dsn = .*|mysql_dsn = \"$MYSQL_DSN\"|" config/modsrv.toml >"$RUN/modsrv.toml"
printf '\n# Added by make demo.\n[[user]]\nname = "demo"\nbcrypt = "%s"\n' "$DEMO_HASH" >>"$RUN/modsrv.toml"
chmod 600 "$RUN/modsrv.toml"

"$BIN/comsrv" -config config/comsrv.toml -redis "$REDIS_URL" -snapshot "$RUN/config.snapshot" 2>"$RUN/comsrv.log" &
pids+=($!)
"$BIN/modsrv" -config "$RUN/modsrv.toml" -redis "$REDIS_URL" 2>"$RUN/modsrv.log" &
pids+=($!)
# A local webhook receiver and alarmsrv on a copy of its configuration with
# a target for it and a rule sending device events to it.
WEBHOOK_SECRET="whsec_$(head -c 32 /dev/urandom | base64)"
"$BIN/webhookrecv" -listen 127.0.0.1:8010 -secret "$WEBHOOK_SECRET" -log "$RUN/webhooks.log" >/dev/null 2>"$RUN/webhookrecv.log" &
pids+=($!)
cp config/alarmsrv.toml "$RUN/alarmsrv.toml"
cat >>"$RUN/alarmsrv.toml" <<EOC

# Added by make demo: the local receiver (tools/webhookrecv) and a rule for it.
[[target]]
id = "demo-receiver"
url = "http://127.0.0.1:8010/voltedge"
secrets = ["$WEBHOOK_SECRET"]

[[rule]]
id = "demo-device-offline"
name = "A DTU went offline or came back"
events = ["device_offline", "device_online"]
targets = ["demo-receiver"]
EOC
chmod 600 "$RUN/alarmsrv.toml"
"$BIN/alarmsrv" -config "$RUN/alarmsrv.toml" -redis "$REDIS_URL" 2>"$RUN/alarmsrv.log" &
pids+=($!)
"$BIN/netsrv" -config "$RUN/netsrv.toml" -redis "$REDIS_URL" 2>"$RUN/netsrv.log" &
pids+=($!)
sleep 1
"$BIN/dtusim" -n 3 -prefix DTU -start 1001 -heartbeat-interval 10s -per-device-map -stats 0s 2>"$RUN/dtusim.log" &
pids+=($!)
# DTU1004 in a process of its own, stopped after 20 s: a device_offline
# event, and so a webhook call.
"$BIN/dtusim" -n 1 -prefix DTU -start 1004 -heartbeat-interval 10s -per-device-map -stats 0s 2>"$RUN/dtusim-1004.log" &
dtu1004=$!
pids+=($dtu1004)
(sleep 20; kill "$dtu1004" 2>/dev/null; echo "DTU1004 stopped: it goes offline now") &
"$BIN/dtusim" -profile tlv -addr 127.0.0.1:22336 -n 1 -start 5001 -heartbeat-interval 20s -data "t=21.5" -data-interval 10s -stats 0s 2>"$RUN/dtusim-tlv.log" &
pids+=($!)
"$BIN/dtusim" -profile line -addr 127.0.0.1:22335 -n 1 -prefix DEV -start 1 -width 3 -data "temp=21.5" -data-interval 5s -stats 0s 2>"$RUN/dtusim-line.log" &
pids+=($!)
sleep 3

cat <<EOT

VoltEdge demo running (Redis $REDIS_URL, logs in $RUN).
Try, in another terminal:
  ${CLI[*]} HGETALL comsrv:1001:m          # channel values, as polled
  ${CLI[*]} HGETALL modsrv:power_meter     # model values, mapped by the Lua library
  ${CLI[*]} SUBSCRIBE update:power_meter   # live updates
  ${CLI[*]} XRANGE alarm:events - +        # alarm raise/clear (voltage crosses 250 V)
  ${CLI[*]} XRANGE comsrv:events - +       # link events (online, offline, replaced, refused)
  ${CLI[*]} LRANGE comsrv:1001:frames 0 9  # last raw frames of a channel
  $BIN/edgectl send power_meter setpoint 50 # a control: prints the id, then the outcome
  ${CLI[*]} PUBLISH result "open,DEV001,valve=1"   # forwarded to the line device
  $BIN/edgectl status                       # channels with counters, and netsrv's upload backlog
  mariadb -h ${MYSQL_ADDR%:*} -P ${MYSQL_ADDR#*:} -u root voltedge_demo -e 'SELECT COUNT(*) FROM data'   # history rows
  curl -s http://127.0.0.1:8004/health      # netsrv: MySQL, spool and stream backlog
  tail -f $RUN/webhooks.log                 # signed webhook calls (DTU1004 goes offline 20 s after the start)
  curl -s http://127.0.0.1:8002/webhooks/targets   # the target's counters (also in the console)
  open http://127.0.0.1:8002/               # the console (log in as demo / $DEMO_PASSWORD to send controls)
  wscat -c ws://127.0.0.1:8002/ws -x '{"type":"subscribe","models":["power_meter"]}' -w 10
  kill -HUP \$(pgrep -x comsrv)  or  $BIN/edgectl reload   # re-read channels and templates
Ctrl-C stops the demo.

EOT
"${CLI[@]}" HGETALL modsrv:power_meter | paste - - | head -20
if [ "$DEMO_SECONDS" -gt 0 ]; then
  sleep "$DEMO_SECONDS"
else
  wait
fi
