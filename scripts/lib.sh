# Shared by scripts/demo and scripts/bench (source it): a throwaway
# mosquitto, sshd and agents on free loopback ports, all killed and the
# temporary directory removed on exit. Expects $agent and $proxy (binary
# paths). After `start_all`, these are set: tmp, mqtt_port, sshd_port, user,
# node, prefix, ssh_opts (ssh options that go through mqtt-proxy).
# The broker runs with mosquitto's default settings (Nagle's algorithm on,
# default queue and in-flight limits), as most users' brokers do;
# BROKER_CONF adds lines to its config; KEEP_LOGS=DIR keeps the logs.

tmp="$(mktemp -d "${TMPDIR:-/tmp}/mqtt-proxy-${0##*/}.XXXXXX")"
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    for log in "$tmp"/*.log; do
      [ -f "$log" ] && { echo "--- $(basename "$log") (tail) ---" >&2; tail -n 20 "$log" >&2; }
    done
  fi
  # KEEP_LOGS=DIR: the logs (agents, broker, relays) are kept there.
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp "$tmp"/*.log "$KEEP_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tool() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || { echo "${0##*/}: $1 not found" >&2; exit 1; }; }

# A loopback port nothing accepts on: try random high ports until a
# connection attempt to one fails.
used=" "
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    case "$used" in *" $port "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      used+="$port "
      echo "$port"
      return
    fi
  done
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "${0##*/}: timed out waiting for $what" >&2
      exit 1
    fi
    sleep 0.1
  done
}
accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# median/lo/hi of the numbers on stdin.
stats() { sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s %s %s\n", m, v[1], v[NR] }'; }
# Wall-clock seconds (with nanoseconds), and the seconds since such a time.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.4f", b - a }'; }

start_broker() {
  mqtt_port=$(free_port)
  echo "==> mosquitto on 127.0.0.1:$mqtt_port (default settings${BROKER_CONF:+ + $BROKER_CONF})" >&2
  cat >"$tmp/mosquitto.conf" <<CONF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
${BROKER_CONF:-}
CONF
  "$(tool mosquitto)" -c "$tmp/mosquitto.conf" </dev/null >>"$tmp/mosquitto.log" 2>&1 &
  broker_pid=$!
  pids+=("$broker_pid")
  wait_for 10 "mosquitto to listen" accepts "$mqtt_port"
}

start_sshd() {
  sshd_port=$(free_port)
  user=$(id -un)
  echo "==> sshd on 127.0.0.1:$sshd_port (logins for $user with a throwaway key)" >&2
  ssh-keygen -q -t ed25519 -N '' -C demo-host -f "$tmp/host_key"
  ssh-keygen -q -t ed25519 -N '' -C demo-client -f "$tmp/client_key"
  cp "$tmp/client_key.pub" "$tmp/authorized_keys"
  sftp_server=internal-sftp
  [ -x /usr/lib/openssh/sftp-server ] && sftp_server=/usr/lib/openssh/sftp-server
  # MaxStartups: the benchmark opens 65 sessions at once; sshd's default
  # (10:30:100) would drop some of them before they log in.
  cat >"$tmp/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $sshd_port
HostKey $tmp/host_key
AuthorizedKeysFile $tmp/authorized_keys
PidFile $tmp/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
MaxStartups 200:30:300
Subsystem sftp $sftp_server
CONF
  # Privilege separation directory, required when sshd starts as root.
  if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd; fi
  "$(tool sshd)" -D -e -f "$tmp/sshd_config" </dev/null >>"$tmp/sshd.log" 2>&1 &
  sshd_pid=$!
  pids+=("$sshd_pid")
  wait_for 10 "sshd to listen" accepts "$sshd_port"
}

# start_sshd_at ADDR: a second sshd like start_sshd's (same port and
# keys), listening on ADDR; the caller waits for it where ADDR is reached.
start_sshd_at() {
  sed -e "s/^ListenAddress .*/ListenAddress $1/" -e "s|^PidFile .*|PidFile $tmp/sshd-$1.pid|" \
    "$tmp/sshd_config" >"$tmp/sshd-$1.config"
  "$(tool sshd)" -D -e -f "$tmp/sshd-$1.config" </dev/null >>"$tmp/sshd-$1.log" 2>&1 &
  pids+=($!)
}

# tun_path NS A B HERE FAR MS MTU [RATE]: TUN devices A (here, address
# HERE/30) and B (in namespace NS, FAR/30), joined by scripts/tun-delay,
# MS each way and RATE bytes/s (see there). Its log is $tmp/tun-A.log;
# the caller deletes the devices on exit.
tun_path() {
  local ns=$1 a=$2 b=$3 here=$4 far=$5 ms=$6 mtu=$7
  ip tuntap add dev "$a" mode tun
  ip tuntap add dev "$b" mode tun
  scripts/tun-delay "$a" "$b" "$ms" ${8:+"$8"} >"$tmp/tun-$a.log" 2>&1 &
  pids+=($!)
  wait_for 10 "tun-delay to attach" grep -q ready "$tmp/tun-$a.log"
  ip link set "$b" netns "$ns"
  ip addr add "$here/30" dev "$a"
  ip link set "$a" mtu "$mtu" up
  ip netns exec "$ns" ip addr add "$far/30" dev "$b"
  ip netns exec "$ns" ip link set "$b" mtu "$mtu" up
}

# start_agent NODE BROKER_PORT TARGET_PORT [ARGS...]: an agent serving NODE
# (log in $tmp/agent-NODE.log, pid in agent_pids[NODE]); the broker's host
# is $broker_host (default 127.0.0.1).
declare -A agent_pids
start_agent() {
  local node=$1 port=$2 target=$3 host=${broker_host:-127.0.0.1}
  shift 3
  echo "==> mqtt-proxy-agent for node '$node' (broker $host:$port, target port $target)" >&2
  RUST_LOG=info "$agent" --host "$host" --port "$port" --topic-prefix "$prefix" \
    --node-id "$node" --target "127.0.0.1:$target" "$@" </dev/null >>"$tmp/agent-$node.log" 2>&1 &
  agent_pids[$node]=$!
  pids+=($!)
  wait_for 10 "the agent for $node to come online" grep -q "agent is online" "$tmp/agent-$node.log"
}

# ssh_via PROXYCOMMAND: ssh options that log in with the throwaway key
# through PROXYCOMMAND.
ssh_via() {
  printf '%s\n' -F /dev/null -i "$tmp/client_key" -o IdentitiesOnly=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes -o LogLevel=ERROR -o "ProxyCommand=$1"
}

# The broker, sshd and one agent for $node (default demo-node); ARGS go to
# the agent.
start_all() {
  prefix="mqtt-proxy-${0##*/}-$$"
  node="${node:-demo-node}"
  start_broker
  start_sshd
  start_agent "$node" "$mqtt_port" "$sshd_port" "$@"
  mapfile -t ssh_opts < <(ssh_via "$proxy --host 127.0.0.1 --port $mqtt_port --topic-prefix $prefix %n")
}
