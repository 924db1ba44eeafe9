#!/bin/sh
# lab_hosts.sh: `orch apply --parallelism 10` of 20 lab.host resources
# (namespace, veth on the orch0 bridge, address, route, host key, sshd
# inside), against a plain shell script doing the same steps one host after
# another. Medians of REPS runs, as a ratio; teardown is not timed. Root.
. "$(dirname "$0")/common.sh"
N=${N:-20}
[ "$(id -u)" -eq 0 ] || { echo "lab_hosts.sh: needs root" >&2; exit 1; }
chmod 0711 "$work"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$work/id"

serial_create() {  # the steps lab.host takes, as a person would type them
  ip link add orch0 type bridge
  ip addr add 10.77.0.1/24 dev orch0
  ip link set orch0 up
  mkdir -p /run/sshd
  i=1
  while [ $i -le "$N" ]; do
    name=$(printf bs%02d $i) ns=orch-$(printf bs%02d $i) d="$work/sh/$(printf bs%02d $i)"
    ip netns add "$ns"
    ip link add "orch-$name" type veth peer name eth0 netns "$ns"
    ip link set "orch-$name" master orch0
    ip link set "orch-$name" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "10.77.0.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via 10.77.0.1
    mkdir -p "$d"
    ssh-keygen -q -t ed25519 -N '' -f "$d/key"
    cp "$work/id.pub" "$d/authorized_keys"
    cat > "$d/sshd_config" <<CFG
ListenAddress 10.77.0.$((i + 1))
Port 22
HostKey $d/key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PasswordAuthentication no
StrictModes no
UsePAM no
CFG
    ip netns exec "$ns" /usr/sbin/sshd -f "$d/sshd_config" -E "$d/sshd.log"
    until [ -s "$d/sshd.pid" ]; do sleep 0.002; done
    i=$((i + 1))
  done
}

# Deletes only what is there: the trap calls it again after the loop has.
serial_delete() {
  i=1
  while [ $i -le "$N" ]; do
    name=$(printf bs%02d $i) d="$work/sh/$(printf bs%02d $i)"
    if [ -s "$d/sshd.pid" ]; then kill "$(cat "$d/sshd.pid")" 2>/dev/null || :; fi
    if [ -e "/sys/class/net/orch-$name" ]; then ip link del "orch-$name"; fi
    if [ -e "/run/netns/orch-$name" ]; then ip netns del "orch-$name"; fi
    i=$((i + 1))
  done
  if [ -e /sys/class/net/orch0 ]; then ip link del orch0; fi
  rm -rf "$work/sh"
}
mkdir "$work/orch"
cat > "$work/orch/hosts.lua" <<LUA
local key = assert(fs.read("$work/id.pub"))
for i = 1, $N do
  local name = ("bo%02d"):format(i)
  resource "lab.host" (name) { name = name, authorized_key = key }
end
LUA
orch_destroy() { "$ORCH" destroy "$work/orch/hosts.lua" --auto-approve >/dev/null 2>&1; }
# Cleanup never changes the exit status: non-zero means a figure was not measured.
cleanup() {
  status=$?
  set +e
  serial_delete; orch_destroy; rm -rf "$work"
  exit $status
}
trap cleanup EXIT

o="" s=""
r=1
while [ $r -le "$REPS" ]; do
  t=$(now); "$ORCH" apply "$work/orch/hosts.lua" --auto-approve --parallelism 10 >/dev/null; o="$o $(elapsed "$t")"
  orch_destroy
  t=$(now); serial_create; s="$s $(elapsed "$t")"
  serial_delete
  r=$((r + 1))
done
mo=$(echo $o | tr ' ' '\n' | median); ms=$(echo $s | tr ' ' '\n' | median)
"$ORCH" -e "print(('lab hosts   $N x namespace+veth+sshd: orch apply --parallelism 10 %5.0f ms   serial sh %5.0f ms   ratio %.2fx  (target <= 0.5x)'):format($mo * 1e3, $ms * 1e3, $mo / $ms))"
