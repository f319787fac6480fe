#!/usr/bin/env bash
# Runs the fan-out scenario against roomd, the Socket.IO peer and the bare
# broadcast ceiling at a series of offered rates, on this machine, one after
# the other, then plots the latencies. Results land in bench/results/.
#
#   bench/run-fanout.sh            # ROOMS, MEMBERS, SENDERS, RATES, DURATION may be set
set -euo pipefail
ulimit -n "$(ulimit -Hn)"
cd "$(dirname "$0")/.."
ROOMS=${ROOMS:-10} MEMBERS=${MEMBERS:-100} SENDERS=${SENDERS:-10}
RATES=${RATES:-"10 50 200 0"} DURATION=${DURATION:-10}
cargo build --release --workspace --quiet
(cd bench/socketio && npm install --no-audit --no-fund --silent)
data=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$data"' EXIT

start() { "$@" >/dev/null 2>&1 & echo $!; }
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

roomd_pid=$(start target/release/roomd --bind 127.0.0.1:9000 --data-dir "$data" \
  --requests-per-second 1000000 --requests-burst 1000000 \
  --messages-per-second 1000000 --messages-burst 1000000 --logins-per-second 1000000 \
  --max-rooms-per-user 100000 --outbox-frames 65536 --outbox-bytes 67108864)
socketio_pid=$(PORT=9002 start node bench/socketio/server.js)
bare_pid=$(start target/release/bare-broadcast 127.0.0.1:9001)
wait_port 9000; wait_port 9001; wait_port 9002

for rate in $RATES; do
  for target in roomd socketio bare; do
    case $target in roomd) port=9000 pid=$roomd_pid;; bare) port=9001 pid=$bare_pid;; socketio) port=9002 pid=$socketio_pid;; esac
    echo "== $target at $rate msg/s per sender"
    target/release/roomd-bench --server-pid "$pid" --json "bench/results/fanout-$target-$rate.json" \
      fanout --target $target --addr 127.0.0.1:$port --rooms "$ROOMS" --members "$MEMBERS" \
      --senders "$SENDERS" --rate "$rate" --duration "$DURATION"
  done
done
python3 bench/plot.py
