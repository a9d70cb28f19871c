# Sourced by tools/mpi-cluster.sh and tools/mpi-bench.sh: three simulated
# hosts on one machine (as root): network namespaces joined by veth pairs
# on a bridge, each its own host name, MPI over TCP between them. The
# launchers reach the "remote" hosts through an agent that runs the
# command in the namespace named by the address (see
# ../shared/design/beyond-one-process.md, 4).
#   netns_up                 makes them (and a trap that removes them, with
#                            anything still running in them, at exit)
#   netns_launcher IMPL      the launch command across them (no -n)
#   netns_run CMD...         runs CMD in the first host, as the launcher's host
# Sets net, hosts, netns_dir.
net=10.77.0
hosts=$net.1,$net.2,$net.3
netns_tag=par$$

netns_down() {
  # Whatever still runs in our namespaces (a launcher a timeout ended may
  # leave ranks behind): only processes started by this script live there.
  for i in 1 2 3; do
    pids=$(ip netns pids ${netns_tag}h$i 2>/dev/null)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  done
  for i in 1 2 3; do ip netns del ${netns_tag}h$i 2>/dev/null; done
  ip link del ${netns_tag}br 2>/dev/null
  rm -rf "$netns_dir"
}

netns_up() {
  [ "$(id -u)" -eq 0 ] || { echo "simulated hosts need root (network namespaces)"; return 1; }
  netns_dir=$(mktemp -d /tmp/parallel-cluster.XXXXXX)
  trap netns_down EXIT
  trap 'exit 130' INT TERM
  ip link add ${netns_tag}br type bridge && ip link set ${netns_tag}br up || return 1
  for i in 1 2 3; do
    ns=${netns_tag}h$i
    ip netns add $ns &&
    ip link add ${netns_tag}v$i type veth peer name eth0 netns $ns &&
    ip link set ${netns_tag}v$i master ${netns_tag}br up &&
    ip -n $ns addr add $net.$i/24 dev eth0 &&
    ip -n $ns link set eth0 up &&
    ip -n $ns link set lo up || return 1
  done
  # The remote-shell agent: AGENT [options] HOST COMMAND...; a host is an
  # address, its namespace the one holding it; the host name is the
  # address (so that a launcher's callback to its own host name resolves).
  cat > "$netns_dir/agent" <<AGENT
#!/bin/sh
while [ \$# -gt 0 ] && [ "\${1#-}" != "\$1" ]; do shift; done
host=\$1; shift
exec ip netns exec ${netns_tag}h\${host##*.} unshare --uts sh -c "hostname \$host; exec \$*"
AGENT
  chmod +x "$netns_dir/agent"
}

netns_launcher() {
  case $1 in
    openmpi)
      echo "mpirun.openmpi --allow-run-as-root --oversubscribe --bind-to none -H $hosts" \
           "--mca plm_rsh_agent $netns_dir/agent --mca btl tcp,self" \
           "--mca btl_tcp_if_include $net.0/24 --mca oob_tcp_if_include $net.0/24" ;;
    mpich)
      echo "env UCX_TLS=tcp,self UCX_NET_DEVICES=eth0" \
           "mpiexec.mpich -launcher rsh -launcher-exec $netns_dir/agent -iface eth0 -hosts $hosts" ;;
    *) echo "unknown MPI implementation: $1" >&2; return 1 ;;
  esac
}

netns_run() {
  ip netns exec ${netns_tag}h1 unshare --uts sh -c "hostname $net.1; exec $*"
}
