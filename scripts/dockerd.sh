#!/usr/bin/env bash
# Start or stop a Docker daemon for `make image` / `make image-test` on a machine that has
# none running (CI here). Idempotent; a daemon that already answers is used as it is.
# Usage: scripts/dockerd.sh start|stop|status
# State lives under $MLOPS_DOCKER_HOME (default .mlops/docker): PID file, log, data root.
# The daemon listens on the default socket, so the docker CLI and the Python SDK
# (docker.from_env) find it without extra settings.
set -euo pipefail

home=${MLOPS_DOCKER_HOME:-.mlops/docker}
sock=/var/run/docker.sock
pidfile="$home/dockerd.pid"
logfile="$home/dockerd.log"

answers() { [ -S "$sock" ] && docker_cli version --format '{{.Server.Version}}' >/dev/null 2>&1; }

docker_cli() {
  # Debian's client talks to Debian's daemon; the image build needs no buildx with it.
  if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi
}

ensure_installed() {
  if [ -x /usr/sbin/dockerd ] || command -v dockerd >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: no dockerd here; install Docker (Debian: apt-get install docker.io)" >&2
    exit 2
  fi
  echo "installing Debian's docker.io ..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null; }
}

ours() {
  # The recorded PID, if it is still a dockerd process.
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

start() {
  if answers; then echo "Docker daemon already answers at $sock"; return; fi
  ensure_installed
  mkdir -p "$home/data"
  # A daemon that exits at once (e.g. leftovers of an unclean stop) gets one more try.
  launch || { clean_network; launch; } || {
    echo "error: dockerd did not start: $(tail -n 1 "$logfile") (log $logfile)" >&2; exit 2; }
  echo "Docker daemon started (PID $(cat "$pidfile"), log $logfile)"
}

launch() {
  local data
  data=$(cd "$home/data" && pwd)
  # Runtime state only (sockets, PID files): stale copies make the next start hang.
  rm -rf "$data/exec" "$data/dockerd-internal.pid"
  setsid "$(command -v dockerd || echo /usr/sbin/dockerd)" \
    --host "unix://$sock" --data-root "$data" --exec-root "$data/exec" \
    --pidfile "$data/dockerd-internal.pid" --storage-driver=overlay2 \
    >"$logfile" 2>&1 </dev/null &
  local launched=$!
  echo "$launched" >"$pidfile"
  for _ in $(seq 1 60); do
    if answers; then
      # The daemon's own PID file names the process for certain (setsid may have forked).
      if [ -s "$data/dockerd-internal.pid" ]; then cat "$data/dockerd-internal.pid" >"$pidfile"; fi
      return 0
    fi
    # Alive is enough here: right after the fork its name may not be dockerd yet.
    if [ ! -d "/proc/$launched" ] && [ ! -s "$data/dockerd-internal.pid" ]; then return 1; fi
    sleep 0.5
  done
  return 1
}

stop() {
  local pid
  if ! pid=$(ours); then
    rm -f "$pidfile"
    if answers; then echo "Docker daemon was not started here: left running"; return; fi
    clean_network  # leftovers of a daemon that is gone
    echo "Docker daemon was not running"
    return
  fi
  local containerd
  containerd=$(cat "$home/data/exec/containerd/containerd.pid" 2>/dev/null || true)
  kill -TERM "$pid"
  for _ in $(seq 1 40); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
  if [ -d "/proc/$pid" ]; then kill -KILL "$pid"; fi
  # The containerd that dockerd started for itself.
  if [ -n "$containerd" ] && [ "$(cat "/proc/$containerd/comm" 2>/dev/null)" = containerd ]; then
    kill -TERM "$containerd" || true
    for _ in $(seq 1 20); do [ -d "/proc/$containerd" ] || break; sleep 0.5; done
  fi
  rm -f "$pidfile"
  clean_network
  echo "Docker daemon stopped"
}

clean_network() {
  # What dockerd leaves behind: its bridge and its iptables rules and chains.
  if ip link show docker0 >/dev/null 2>&1; then ip link delete docker0 || true; fi
  command -v iptables >/dev/null 2>&1 || return 0
  local table rule chain
  for table in filter nat; do
    # Rules in the built-in chains that jump to Docker's chains or name its bridge.
    iptables -t "$table" -S 2>/dev/null \
      | { grep -E -- '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*(-j DOCKER|docker0)' || true; } \
      | sed 's/^-A /-D /' \
      | while read -r rule; do eval "iptables -t $table $rule" || true; done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
      iptables -t "$table" -F "$chain" || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
      iptables -t "$table" -X "$chain" || true
    done
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if answers; then echo "Docker daemon answers at $sock"; else echo "no Docker daemon"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
