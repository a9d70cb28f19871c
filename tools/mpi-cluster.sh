#!/bin/sh
# make test-cluster IMPL: the MPI specs across three simulated hosts (as
# root): three network namespaces joined by veth pairs on a bridge, each
# its own host name, MPI over TCP between them. The launchers reach the
# "remote" hosts through an agent that runs the command in the namespace
# named by the address (see ../shared/design/beyond-one-process.md, 4).
# Everything made here is removed at the end.
set -u
impl=$1
cd "$(dirname "$0")/.."
repo=$PWD
[ "$(id -u)" -eq 0 ] || { echo "test-cluster: needs root (network namespaces)"; exit 1; }
net=10.77.0
tag=par$$
br=${tag}br
dir=$(mktemp -d /tmp/parallel-cluster.XXXXXX)
cleanup() {
  for i in 1 2 3; do ip netns del ${tag}h$i 2>/dev/null; done
  ip link del "$br" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

ip link add "$br" type bridge && ip link set "$br" up || exit 1
for i in 1 2 3; do
  ns=${tag}h$i
  ip netns add $ns &&
  ip link add ${tag}v$i type veth peer name eth0 netns $ns &&
  ip link set ${tag}v$i master "$br" up &&
  ip -n $ns addr add $net.$i/24 dev eth0 &&
  ip -n $ns link set eth0 up &&
  ip -n $ns link set lo up || exit 1
done

# The remote-shell agent: AGENT [options] HOST COMMAND...; a host is an
# address, its namespace the one holding it; the host name is the address
# (so that a launcher's callback to its own host name resolves).
cat > "$dir/agent" <<AGENT
#!/bin/sh
while [ \$# -gt 0 ] && [ "\${1#-}" != "\$1" ]; do shift; done
host=\$1; shift
exec ip netns exec ${tag}h\${host##*.} unshare --uts sh -c "hostname \$host; exec \$*"
AGENT
chmod +x "$dir/agent"

export LUA_PATH="$repo/lua/?.lua;$repo/lua/?/init.lua;$repo/spec/?.lua;;"
export LUA_CPATH="$repo/build/mpi-$impl/?.so;$repo/build/?.so;;"
export PARALLEL_MPI_EXPECT_HOSTS=3
hosts=$net.1,$net.2,$net.3
case $impl in
  openmpi)
    launch="mpirun.openmpi --allow-run-as-root --oversubscribe --bind-to none -H $hosts
      --mca plm_rsh_agent $dir/agent --mca btl tcp,self
      --mca btl_tcp_if_include $net.0/24 --mca oob_tcp_if_include $net.0/24" ;;
  mpich)
    export UCX_TLS=tcp,self UCX_NET_DEVICES=eth0
    launch="mpiexec.mpich -launcher rsh -launcher-exec $dir/agent -iface eth0 -hosts $hosts" ;;
  *) echo "unknown MPI implementation: $impl"; exit 1 ;;
esac
launch=$(echo $launch)
echo "== make test-cluster: $impl, 3 simulated hosts ($hosts)"
cd "$dir"
timeout 300 ip netns exec ${tag}h1 unshare --uts sh -c "hostname $net.1; exec $launch -n 3 lua5.4 -l parallel.mpi $(command -v busted) --pattern=_mpi $repo/spec/mpi"
rc=$?
[ $rc -eq 0 ] || echo "test-cluster: the $impl specs failed across hosts (exit $rc)"
exit $rc
