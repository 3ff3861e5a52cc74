#!/usr/bin/env bash
# A throwaway three-master Redis Cluster on loopback, for tests and benchmarks.
#
#   scripts/redis-cluster.sh start <dir>   start it; prints REDIS_CLUSTER=host:port,host:port,host:port
#   scripts/redis-cluster.sh stop <dir>    stop what `start` started there (by pid files), remove <dir>
#   scripts/redis-cluster.sh run <cmd...>  start one in a temporary directory, run the command
#                                          with REDIS_CLUSTER set, stop it; exits with the command's code
#
# Ports: the first three free ones from REDIS_CLUSTER_BASE_PORT (default 30001), each with its
# cluster bus port (+10000) free too. No persistence (--save "", no AOF).
set -euo pipefail

start() {
  local dir=$1
  mkdir -p "$dir"
  local port=${REDIS_CLUSTER_BASE_PORT:-30001}
  local ports=()
  while [ ${#ports[@]} -lt 3 ]; do
    if [ "$port" -gt 60000 ]; then echo "redis-cluster: no free ports" >&2; return 1; fi
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
      ! (exec 3<>"/dev/tcp/127.0.0.1/$((port + 10000))") 2>/dev/null; then
      ports+=("$port")
    fi
    port=$((port + 1))
  done
  for p in "${ports[@]}"; do
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "nodes-$p.conf" --dir "$dir" --save "" --appendonly no \
      --daemonize yes --pidfile "$dir/redis-$p.pid" --logfile "$dir/redis-$p.log"
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 1 50); do
      redis-cli -p "$p" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  local nodes=()
  for p in "${ports[@]}"; do nodes+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1 || {
    cat "$dir/create.log" >&2
    return 1
  }
  # Every node must agree that the cluster is up before anyone uses it.
  for p in "${ports[@]}"; do
    for _ in $(seq 1 100); do
      redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
      sleep 0.1
    done
    redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || {
      echo "redis-cluster: node $p is not ready" >&2
      return 1
    }
  done
  local spec
  spec=$(IFS=,; echo "${nodes[*]}")
  echo "$spec" >"$dir/nodes"
  echo "REDIS_CLUSTER=$spec"
}

stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  for f in "$dir"/redis-*.pid; do
    [ -e "$f" ] || continue
    local pid
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}

case "${1:-}" in
  start) start "${2:?usage: $0 start <dir>}" ;;
  stop) stop "${2:?usage: $0 stop <dir>}" ;;
  run)
    shift
    dir=$(mktemp -d "${TMPDIR:-/tmp}/bulkmodel-cluster-XXXXXX")
    trap 'stop "$dir"' EXIT
    start "$dir" >/dev/null
    export REDIS_CLUSTER
    REDIS_CLUSTER=$(cat "$dir/nodes")
    echo "redis-cluster: $REDIS_CLUSTER" >&2
    set +e
    "$@"
    code=$?
    set -e
    exit $code
    ;;
  *)
    echo "usage: $0 start <dir> | stop <dir> | run <command...>" >&2
    exit 2
    ;;
esac
