#!/bin/bash
# The deployment artifacts under deploy/ are valid, as far as a machine
# without a container engine or a cluster can tell:
#   - every YAML file parses; the Kubernetes manifests, the compose file, the
#     Dockerfile, the example configuration and the Grafana dashboard hold
#     what they must, checked against sagad's own metric and key tables
#     (tests/e2e/deploy_check.py);
#   - the dashboard's queries and the alert rules are valid PromQL, and the
#     alerts fire as their unit tests say (promtool, Debian package prometheus);
#   - the systemd units pass `systemd-analyze verify` and keep their hardening
#     (Debian package systemd), the sysusers entry parses;
#   - the container health check script tells 200 from 503 and from nothing
#     listening;
#   - the kustomization renders (kubectl kustomize, when kubectl is there).
# Needs /usr/bin/python3 with python3-yaml. A tool that is missing is reported
# as SKIP; any problem found fails the test.
set -u
SRC=${SAGA_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
DEPLOY=$SRC/deploy
PY=/usr/bin/python3
TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

passed=0
failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }
skip() { echo "SKIP: $1"; }
# run WHAT CMD...: passes when CMD exits 0; its output is shown on failure.
run() {
    local what=$1
    shift
    if "$@" >"$TMP/out" 2>&1; then ok "$what"; else fail "$what"; sed 's/^/    /' "$TMP/out"; fi
}

# ---- structure: YAML, manifests, compose, Dockerfile, dashboard ----------------
if ! "$PY" -c 'import yaml' 2>/dev/null; then
    fail "python3-yaml is installed (apt-get install python3-yaml)"
    echo "$passed passed, $failed failed"
    exit 1
fi
if "$PY" "$SRC/tests/e2e/deploy_check.py" "$SRC" "$TMP/dashboard-rules.yaml" >"$TMP/check" 2>&1; then
    ok "deploy_check.py: $(grep -c '^ok:' "$TMP/check") structural checks"
else
    fail "deploy_check.py"
    grep -v '^ok:' "$TMP/check" | sed 's/^/    /'
fi

# ---- the saga definitions of the Kubernetes ConfigMap ---------------------------
SAGACTL=${SAGA_BINARY_DIR:-$SRC/build}/orchestrator/sagactl
mkdir -p "$TMP/sagas"
"$PY" - "$DEPLOY/k8s/configmap-sagas.yaml" "$TMP/sagas" <<'EOF'
import os, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
for name, body in (doc.get("data") or {}).items():
    with open(os.path.join(sys.argv[2], os.path.basename(name)), "w") as f:
        f.write(body)
EOF
if [ ! -x "$SAGACTL" ]; then
    skip "sagactl not built: the ConfigMap's definitions not validated"
elif "$SAGACTL" validate "$TMP"/sagas/*.json >"$TMP/out" 2>&1; then
    ok "the ConfigMap's saga definitions pass sagactl validate ($(ls "$TMP/sagas" | wc -l) files)"
elif grep -q "not implemented" "$TMP/out"; then
    skip "sagactl validate is not implemented in this build"
else
    fail "the ConfigMap's saga definitions pass sagactl validate"
    sed 's/^/    /' "$TMP/out"
fi

# ---- PromQL and alert rules --------------------------------------------------
if command -v promtool >/dev/null; then
    if [ -f "$TMP/dashboard-rules.yaml" ]; then
        run "dashboard queries are valid PromQL" promtool check rules "$TMP/dashboard-rules.yaml"
    else
        fail "dashboard queries were extracted"
    fi
    run "alert rules pass promtool check rules" promtool check rules "$DEPLOY/prometheus/sagad-alerts.yaml"
    run "alert rules pass their unit tests" \
        bash -c "cd '$DEPLOY/prometheus' && promtool test rules sagad-alerts.test.yaml"
else
    skip "promtool not installed (apt-get install prometheus): PromQL not checked"
fi

# ---- systemd -----------------------------------------------------------------
unit_has() { # unit line...: each line present exactly
    local unit=$1
    shift
    for line in "$@"; do
        grep -qxF -- "$line" "$DEPLOY/systemd/$unit" || { echo "missing in $unit: $line"; return 1; }
    done
}
run "sagad.service has the required settings" unit_has sagad.service \
    "Type=simple" "User=sagad" "ExecStart=/usr/local/bin/sagad --config /etc/sagad/sagad.json" \
    "EnvironmentFile=-/etc/sagad/sagad.env" "Restart=on-failure" "KillSignal=SIGTERM" \
    "TimeoutStopSec=30" "NoNewPrivileges=yes" "ProtectSystem=strict" "PrivateTmp=yes" \
    "Requires=sagad-migrate.service"
run "sagad-migrate.service is a oneshot before sagad" unit_has sagad-migrate.service \
    "Type=oneshot" "Before=sagad.service" "User=sagad" "ExecStart=/usr/local/bin/sagactl migrate" \
    "EnvironmentFile=-/etc/sagad/sagad.env"
if command -v systemd-analyze >/dev/null; then
    # The programs are not installed here: the copies run a stub in their
    # place, with the same arguments, so that verify judges the syntax.
    mkdir -p "$TMP/units" "$TMP/bin"
    for prog in sagad sagactl; do
        printf '#!/bin/sh\nexit 0\n' >"$TMP/bin/$prog"
        chmod +x "$TMP/bin/$prog"
    done
    for unit in sagad.service sagad-migrate.service; do
        sed "s#^ExecStart=/usr/local/bin/#ExecStart=$TMP/bin/#" "$DEPLOY/systemd/$unit" >"$TMP/units/$unit"
    done
    # verify exits 0 on unknown keys and bad values, and only warns: any
    # output at all is a problem.
    (cd "$TMP/units" && systemd-analyze verify ./sagad.service ./sagad-migrate.service) >"$TMP/verify" 2>&1
    rc=$?
    if [ $rc -eq 0 ] && [ ! -s "$TMP/verify" ]; then
        ok "systemd-analyze verify passes without a warning"
    else
        fail "systemd-analyze verify (exit $rc)"
        sed 's/^/    /' "$TMP/verify"
    fi
    for unit in sagad.service sagad-migrate.service; do
        run "$unit is hardened (systemd-analyze security exposure <= 2.5)" \
            systemd-analyze security --offline=yes --threshold=25 "$TMP/units/$unit"
    done
else
    skip "systemd-analyze not installed (apt-get install systemd): units not verified"
fi
if command -v systemd-sysusers >/dev/null; then
    mkdir -p "$TMP/root/etc"
    run "sagad.sysusers.conf creates the user sagad" bash -c \
        "systemd-sysusers --root='$TMP/root' --dry-run '$DEPLOY/systemd/sagad.sysusers.conf' 2>&1 | grep -q \"user 'sagad'\""
fi

# ---- the container health check ----------------------------------------------
hc=$DEPLOY/docker/healthcheck.sh
run "healthcheck.sh is valid bash" bash -n "$hc"
cat >"$TMP/server.py" <<'EOF'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = {"/healthz": 200, "/readyz": 503}.get(self.path, 404)
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok\n" if code == 200 else b"not ready: database\n")
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1] + ".tmp", "w").write(str(s.server_address[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.serve_forever()
EOF
"$PY" "$TMP/server.py" "$TMP/port" 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 50); do [ -s "$TMP/port" ] && break; sleep 0.1; done
if [ -s "$TMP/port" ]; then
    port=$(cat "$TMP/port")
    run "healthcheck.sh passes on 200 (/healthz, wildcard listen address)" \
        env SAGA_HTTP_LISTEN="0.0.0.0:$port" bash "$hc" /healthz
    run "healthcheck.sh passes on 200 (explicit address)" \
        env SAGA_HTTP_LISTEN="127.0.0.1:$port" bash "$hc"
    run "healthcheck.sh fails on 503 (/readyz not ready)" \
        bash -c "! SAGA_HTTP_LISTEN=127.0.0.1:$port bash '$hc' /readyz"
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
    run "healthcheck.sh fails when nothing listens" \
        bash -c "! SAGA_HTTP_LISTEN=127.0.0.1:$port bash '$hc' /healthz"
else
    fail "test HTTP server started"
fi

# ---- kustomize -----------------------------------------------------------------
if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
    if kubectl kustomize "$DEPLOY/k8s" >"$TMP/rendered.yaml" 2>"$TMP/kerr"; then
        kinds=$("$PY" -c 'import sys,yaml; print(" ".join(sorted(d["kind"] for d in yaml.safe_load_all(open(sys.argv[1])) if d)))' "$TMP/rendered.yaml")
        if [ "$kinds" = "ConfigMap ConfigMap Deployment Job PodDisruptionBudget Secret Service" ]; then
            ok "kubectl kustomize renders every object"
        else
            fail "kubectl kustomize renders every object (got: $kinds)"
        fi
    else
        fail "kubectl kustomize deploy/k8s"
        sed 's/^/    /' "$TMP/kerr"
    fi
else
    skip "kubectl not installed: kustomization not rendered"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
