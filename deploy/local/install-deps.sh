#!/usr/bin/env bash
# install-deps.sh: installs every Debian 12 package sagad needs to build, test
# and run on one machine (run as root). Packages already installed are left
# as they are; when all are there apt is not called at all (set
# SAGA_APT_FORCE=1 to run apt-get update and install anyway).
#
# The Debian packages of PostgreSQL and RabbitMQ start a system-wide instance
# on installation; a policy-rc.d that refuses service starts is put in place
# while apt runs, so none is left running (the local stack runs its own).
set -euo pipefail

PACKAGES=(
    # build
    build-essential cmake pkg-config git ca-certificates
    clang libclang-rt-14-dev
    librdkafka-dev librabbitmq-dev libpq-dev libjansson-dev libcmocka-dev
    libmicrohttpd-dev libssl-dev
    # services of the local stack and the tests
    postgresql postgresql-contrib rabbitmq-server
    # test, benchmark and operations tools
    kcat faketime gnuplot prometheus python3 python3-jsonschema python3-yaml systemd
    curl jq procps util-linux iproute2
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)) && [[ ${SAGA_APT_FORCE:-0} != 1 ]]; then
    echo "[deps] all ${#PACKAGES[@]} packages are installed"
    exit 0
fi
[[ $(id -u) == 0 ]] || { echo "[deps] run as root to install: ${missing[*]}" >&2; exit 1; }

policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# refuse service starts while sagad installs its packages\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
    trap 'rm -f "$policy"' EXIT
fi

echo "[deps] installing: ${missing[*]:-${PACKAGES[*]}}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${PACKAGES[@]}"
((own_policy)) && echo "[deps] service starts were refused during the install"
echo "[deps] done"
