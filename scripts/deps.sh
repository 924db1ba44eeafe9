#!/bin/sh
# deps.sh: install what orch builds, tests and benchmarks (bench/) with,
# from Debian's packages, only when something is missing (so it is quick on
# a machine that has it).
set -eu
packages="build-essential cmake pkg-config git
  liblua5.4-dev lua5.4 libuv1-dev libssh2-1-dev libyaml-dev libsqlite3-dev libssl-dev
  libedit-dev libarchive-dev lua-busted lua-cjson openssh-server openssh-client tmux libxml2-utils
  libmicrohttpd-dev curl openssl
  iproute2 procps postgresql haproxy python3
  hyperfine bc"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
