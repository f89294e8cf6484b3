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
  local data
  data=$(cd "$home/data" && pwd)
  setsid "$(command -v dockerd || echo /usr/sbin/dockerd)" \
    --host "unix://$sock" --data-root "$data" --exec-root "$data/exec" \
    --pidfile "$data/dockerd-internal.pid" --storage-driver=overlay2 \
    >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 60); do
    if answers; then echo "Docker daemon started (PID $(cat "$pidfile"), log $logfile)"; return; fi
    if ! ours >/dev/null; then
      echo "error: dockerd exited: $(tail -n 1 "$logfile")" >&2; exit 2
    fi
    sleep 0.5
  done
  echo "error: dockerd did not answer within 30 s (log $logfile)" >&2
  exit 2
}

stop() {
  local pid
  if ! pid=$(ours); then rm -f "$pidfile"; echo "Docker daemon was not started here"; return; fi
  kill -TERM "$pid"
  for _ in $(seq 1 40); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
  [ -d "/proc/$pid" ] && kill -KILL "$pid"
  rm -f "$pidfile"
  clean_network
  echo "Docker daemon stopped"
}

clean_network() {
  # What dockerd leaves behind: its bridge and its iptables chains.
  if ip link show docker0 >/dev/null 2>&1; then ip link delete docker0 || true; fi
  command -v iptables >/dev/null 2>&1 || return 0
  local table chain
  for table in filter nat; do
    for chain in DOCKER-USER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER DOCKER-FORWARD DOCKER-BRIDGE DOCKER-CT; do
      iptables -t "$table" -S "$chain" >/dev/null 2>&1 || continue
      # Remove the jumps into the chain, then the chain itself.
      iptables -t "$table" -S | grep -E -- "-j $chain( |$)" | sed 's/^-A /-D /' \
        | while read -r rule; do eval "iptables -t $table $rule" || true; done
      iptables -t "$table" -F "$chain" || true
    done
    for chain in DOCKER-USER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER DOCKER-FORWARD DOCKER-BRIDGE DOCKER-CT; do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
  iptables -t nat -S POSTROUTING 2>/dev/null | grep -- '-o docker0\|! -o docker0' | sed 's/^-A /-D /' \
    | while read -r rule; do eval "iptables -t nat $rule" || true; done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if answers; then echo "Docker daemon answers at $sock"; else echo "no Docker daemon"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
