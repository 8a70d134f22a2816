#!/bin/bash
# Container health check for sagad: exits 0 when sagad's HTTP endpoint answers
# "200" on PATH (default /healthz), 1 otherwise. Needs only bash (its
# /dev/tcp), so the runtime image carries no HTTP client. The address comes
# from SAGA_HTTP_LISTEN (HOST:PORT, [V6]:PORT); a wildcard host is reached on
# loopback.
set -u
path=${1:-/healthz}
listen=${SAGA_HTTP_LISTEN:-127.0.0.1:9464}
port=${listen##*:}
host=${listen%:*}
host=${host#[}
host=${host%]}
case $host in
"" | 0.0.0.0 | "*") host=127.0.0.1 ;;
"::") host=::1 ;;
esac
exec 3<>"/dev/tcp/$host/$port" 2>/dev/null || exit 1
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
IFS= read -r -t 5 status <&3 || exit 1
exec 3<&-
status=${status%$'\r'}
case $status in
"HTTP/"*" 200" | "HTTP/"*" 200 "*) exit 0 ;;
esac
exit 1
