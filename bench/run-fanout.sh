#!/usr/bin/env bash
# Runs the fan-out scenario against roomd, the Socket.IO peer and the bare
# broadcast ceiling at a series of offered rates, on this machine, one after
# the other, then plots the latencies. Results land in bench/results/.
#
#   bench/run-fanout.sh            # ROOMS, MEMBERS, SENDERS, RATES, DURATION, OUT may be set
#
# OUT names the result files (OUT-<target>-<rate>.json) and the plot.
set -euo pipefail
ulimit -n "$(ulimit -Hn)"
cd "$(dirname "$0")/.."
ROOMS=${ROOMS:-10} MEMBERS=${MEMBERS:-100} SENDERS=${SENDERS:-10}
RATES=${RATES:-"10 50 200 0"} DURATION=${DURATION:-10} OUT=${OUT:-fanout}
# Client source addresses 127.0.0.1..N: 10,000 connections per target would
# exhaust one address's ephemeral ports across the three targets.
SOURCES=${SOURCES:-4}
cargo build --release --workspace --quiet
(cd bench/socketio && npm install --no-audit --no-fund --silent)
data=$(mktemp -d)
pids=()
# Servers are started in command substitutions, so they are not this shell's
# jobs: stop them by pid.
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$data"' EXIT
for port in 9000 9001 9002; do
  if (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "port $port is in use; stop what runs there" >&2; exit 1; fi
done

start() { "$@" >/dev/null 2>&1 & echo $!; }
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

roomd_pid=$(start target/release/roomd --bind 127.0.0.1:9000 --data-dir "$data" \
  --requests-per-second 1000000 --requests-burst 1000000 \
  --messages-per-second 1000000 --messages-burst 1000000 --logins-per-second 1000000 \
  --max-rooms-per-user 100000 --max-created-rooms-per-user 100000 \
  --max-http-connections 100000 --max-http-connections-per-ip 0 \
  --outbox-frames 65536 --outbox-bytes 67108864)
socketio_pid=$(PORT=9002 start node bench/socketio/server.js)
bare_pid=$(start target/release/bare-broadcast 127.0.0.1:9001)
pids=("$roomd_pid" "$socketio_pid" "$bare_pid")
wait_port 9000; wait_port 9001; wait_port 9002

for rate in $RATES; do
  for target in roomd socketio bare; do
    case $target in roomd) port=9000 pid=$roomd_pid;; bare) port=9001 pid=$bare_pid;; socketio) port=9002 pid=$socketio_pid;; esac
    echo "== $target at $rate msg/s per sender"
    target/release/roomd-bench --server-pid "$pid" --json "bench/results/$OUT-$target-$rate.json" \
      fanout --target $target --addr 127.0.0.1:$port --rooms "$ROOMS" --members "$MEMBERS" \
      --senders "$SENDERS" --rate "$rate" --duration "$DURATION" --sources "$SOURCES"
  done
done
python3 bench/plot.py "$OUT"
