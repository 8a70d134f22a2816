#!/usr/bin/python3
"""Static checks of the deployment artifacts under deploy/: what can be
checked without a container engine or a cluster. The metric families and the
configuration keys are read from sagad's sources, so the artifacts are
checked against what the daemon really exposes and accepts.

usage: deploy_check.py SOURCE_DIR [PROMQL_RULES_OUT]

Prints one line per check ("ok: ..." or "FAIL: ..."), exits 1 on any failure.
With PROMQL_RULES_OUT, writes every dashboard query as a Prometheus recording
rule there, so that promtool can check their PromQL syntax.
"""
import base64
import fnmatch
import json
import os
import re
import sys

import yaml

SRC = sys.argv[1] if len(sys.argv) > 1 else "."
DEPLOY = os.path.join(SRC, "deploy")
failures = []


def check(ok, what, detail=""):
    if ok:
        print("ok: " + what)
    else:
        failures.append(what)
        print("FAIL: " + what + (": " + detail if detail else ""))
    return ok


def read(path):
    with open(os.path.join(SRC, path), encoding="utf-8") as f:
        return f.read()


# ---- facts from the sources ------------------------------------------------

def metric_families():
    """{name: (kind, [labels])} from the table in orchestrator/daemon/metrics.c."""
    text = read("orchestrator/daemon/metrics.c")
    fams = {}
    pat = re.compile(r'\{\s*"(sagad_[a-z0-9_]+)"\s*,\s*(COUNTER|GAUGE|HISTOGRAM)\s*,'
                     r'\s*(?:"(?:[^"\\]|\\.)*"\s*)+,\s*\{([^}]*)\}')
    for m in pat.finditer(text):
        labels = re.findall(r'"([a-z_]+)"', m.group(3))
        fams[m.group(1)] = (m.group(2), labels)
    return fams


def config_keys():
    """Dotted configuration keys from the table in orchestrator/daemon/config.c."""
    text = read("orchestrator/daemon/config.c")
    return re.findall(r'\{"([a-z_.]+)",\s*K_[A-Z]+', text)


def env_name(key):
    return "SAGA_" + key.replace(".", "_").upper()


def flatten(obj, prefix=""):
    """Dotted paths of a configuration object; kafka.properties is one value."""
    out = []
    for k, v in obj.items():
        path = prefix + k
        if isinstance(v, dict) and path != "kafka.properties":
            out += flatten(v, path + ".")
        else:
            out.append(path)
    return out


FAMILIES = metric_families()
KEYS = config_keys()
BRIEF_FAMILIES = [
    "sagad_sagas_started_total", "sagad_sagas_finished_total", "sagad_steps_total",
    "sagad_compensations_total", "sagad_step_latency_seconds", "sagad_transitions_total",
    "sagad_batch_size", "sagad_db_transaction_seconds", "sagad_version_conflicts_total",
    "sagad_duplicates_total", "sagad_dead_letters_total", "sagad_messages_consumed_total",
    "sagad_messages_published_total", "sagad_publish_failures_total", "sagad_outbox_pending",
    "sagad_timers_pending", "sagad_sagas_in_flight", "sagad_kafka_consumer_lag", "sagad_ready"]


def check_sources():
    check(len(FAMILIES) >= 19, "metric families read from metrics.c", "found %d" % len(FAMILIES))
    missing = [f for f in BRIEF_FAMILIES if f not in FAMILIES]
    check(not missing, "every documented metric family exists in metrics.c", ", ".join(missing))
    check("database_url" in KEYS and "http.listen" in KEYS, "configuration keys read from config.c",
          ", ".join(KEYS))


# ---- YAML everywhere ---------------------------------------------------------

def yaml_files():
    out = []
    for root, _, files in os.walk(DEPLOY):
        out += [os.path.join(root, f) for f in files if f.endswith((".yaml", ".yml"))]
    return sorted(out)


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def check_yaml_parses():
    files = yaml_files()
    check(len(files) >= 8, "YAML files found under deploy/", str(len(files)))
    for path in files:
        rel = os.path.relpath(path, SRC)
        try:
            docs = load_all(path)
            check(len(docs) > 0, "%s parses as YAML" % rel, "no document")
        except yaml.YAMLError as e:
            check(False, "%s parses as YAML" % rel, str(e).replace("\n", " "))


# ---- PromQL: metric names and labels ---------------------------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset"}


def promql_problems(expr):
    """Metric names that are no family, labels that no family used has."""
    problems = []
    used = set()
    for name in re.findall(r"\bsagad_[a-z0-9_]+", expr):
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in FAMILIES \
                    and FAMILIES[name[: -len(suffix)]][0] == "HISTOGRAM":
                base = name[: -len(suffix)]
        if base not in FAMILIES:
            problems.append("unknown metric %s" % name)
        elif FAMILIES[base][0] == "HISTOGRAM" and base == name:
            problems.append("histogram %s used without _bucket/_sum/_count" % name)
        else:
            used.add(base)
    allowed = {"instance", "job"}
    for fam in used:
        allowed |= set(FAMILIES[fam][1])
        if FAMILIES[fam][0] == "HISTOGRAM":
            allowed.add("le")
    labels = set()
    for sel in re.findall(r"\{([^{}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", sel))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {w.strip() for w in group.split(",") if w.strip()}
    for label in sorted(labels - allowed - PROMQL_WORDS):
        problems.append("label %s is on none of %s" % (label, ", ".join(sorted(used)) or "no metric"))
    if not used:
        problems.append("no sagad metric")
    return problems


# ---- Grafana dashboard ---------------------------------------------------------

def dashboard_targets(dash):
    panels = []
    stack = list(dash.get("panels", []))
    while stack:
        p = stack.pop(0)
        panels.append(p)
        stack += p.get("panels", [])
    return panels, [(p, t) for p in panels for t in p.get("targets", [])]


def check_dashboard(rules_out):
    path = "deploy/grafana/sagad-dashboard.json"
    try:
        dash = json.loads(read(path))
    except (OSError, ValueError) as e:
        check(False, "%s parses as JSON" % path, str(e))
        return
    check(True, "%s parses as JSON" % path)
    panels, targets = dashboard_targets(dash)
    check(len(targets) >= 15, "dashboard has its queries", "%d targets" % len(targets))
    ids = [p.get("id") for p in panels]
    check(len(ids) == len(set(ids)), "dashboard panel ids are unique")
    check(all("gridPos" in p for p in panels), "every dashboard panel has a gridPos")
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    exprs = []
    for panel, target in targets:
        expr = target.get("expr", "")
        exprs.append(expr)
        probs = promql_problems(expr)
        check(not probs, "dashboard panel '%s' query %s uses known metrics and labels"
              % (panel.get("title"), target.get("refId")), "; ".join(probs))
        for var in re.findall(r"\$\{?([a-zA-Z_]+)", expr):
            check(var.startswith("__") or var in variables,
                  "dashboard variable $%s is defined" % var)
    text = "\n".join(exprs)
    required = ["sagad_sagas_started_total", "sagad_sagas_finished_total",
                "sagad_step_latency_seconds_bucket", "sagad_compensations_total",
                "sagad_dead_letters_total", "sagad_outbox_pending", "sagad_timers_pending",
                "sagad_sagas_in_flight", "sagad_version_conflicts_total", "sagad_duplicates_total",
                "sagad_kafka_consumer_lag", "sagad_ready"]
    missing = [m for m in required if m not in text]
    check(not missing, "dashboard shows every required metric", ", ".join(missing))
    for q in ("0.5", "0.99"):
        check(re.search(r"histogram_quantile\(%s,[^\n]*sagad_step_latency_seconds_bucket" % re.escape(q),
                        text) is not None, "dashboard has step latency quantile %s" % q)
    check(re.search(r"by \(status\) \(rate\(sagad_sagas_finished_total", text) is not None,
          "dashboard shows sagas finished by status")
    check(re.search(r"by \(reason\)[^\n]*sagad_dead_letters_total", text) is not None,
          "dashboard shows dead letters by reason")
    if rules_out:
        subst = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                 "$instance": ".*", "$type": ".*"}
        rules = []
        for i, expr in enumerate(exprs):
            for k, v in subst.items():
                expr = expr.replace(k, v)
            rules.append({"record": "dashboard:query_%d" % i, "expr": expr})
        with open(rules_out, "w", encoding="utf-8") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)


# ---- alert rules -------------------------------------------------------------

def check_alerts():
    path = os.path.join(DEPLOY, "prometheus", "sagad-alerts.yaml")
    if not os.path.exists(path):
        return
    doc = load_all(path)[0]
    rules = [r for g in doc.get("groups", []) for r in g.get("rules", [])]
    names = {r.get("alert") for r in rules}
    for want in ("SagadNotReady", "SagadOutboxGrowing", "SagadDeadLetters", "SagadSagasFailed"):
        check(want in names, "alert rule %s exists" % want)
    for r in rules:
        probs = promql_problems(r.get("expr", ""))
        check(not probs, "alert %s uses known metrics and labels" % r.get("alert"), "; ".join(probs))


# ---- configuration -------------------------------------------------------------

def check_config_object(cfg, where, complete):
    paths = flatten(cfg)
    unknown = [p for p in paths if p not in KEYS]
    check(not unknown, "%s has only known configuration keys" % where, ", ".join(unknown))
    if complete:
        missing = [k for k in KEYS if k not in paths]
        check(not missing, "%s sets every configuration key" % where, ", ".join(missing))


def check_example_config():
    path = "deploy/config/sagad.json"
    try:
        cfg = json.loads(read(path))
    except (OSError, ValueError) as e:
        check(False, "%s parses as JSON" % path, str(e))
        return None
    check(True, "%s parses as JSON" % path)
    check_config_object(cfg, path, complete=True)
    return cfg


# ---- Dockerfile ------------------------------------------------------------------

def dockerfile_stages():
    lines, cur = [], ""
    for raw in read("deploy/Dockerfile").splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    stages = []
    for line in lines:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            stages.append({"base": m.group(1), "name": m.group(2), "ins": []})
        elif stages:
            stages[-1]["ins"].append((word, rest.strip()))
    return stages


def stage_chain(stages, stage):
    """The stage and the stages it builds on, nearest first."""
    by_name = {s["name"]: s for s in stages if s["name"]}
    chain = [stage]
    while chain[-1]["base"] in by_name:
        chain.append(by_name[chain[-1]["base"]])
    return chain


def dockerignore_patterns():
    try:
        text = read(".dockerignore")
    except OSError:
        return []
    return [l.strip() for l in text.splitlines() if l.strip() and not l.startswith("#")]


def ignored(path, patterns):
    hit = False
    for p in patterns:
        neg = p.startswith("!")
        pat = p[1:] if neg else p
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(x, pat) or fnmatch.fnmatch(x, pat.replace("**/", "")) for x in prefixes):
            hit = not neg
    return hit


def check_dockerfile():
    try:
        stages = dockerfile_stages()
    except OSError as e:
        check(False, "deploy/Dockerfile exists", str(e))
        return []
    names = [s["name"] for s in stages]
    by_name = {s["name"]: s for s in stages if s["name"]}
    check(len(stages) >= 3, "Dockerfile is multi-stage", "%d stages" % len(stages))
    check("build" in by_name and by_name["build"]["base"] == "debian:12",
          "Dockerfile has a build stage on debian:12")
    check(names[-1] == "sagad", "Dockerfile's last (default) stage is sagad", str(names))
    check("participant" in by_name, "Dockerfile has a participant target")
    patterns = dockerignore_patterns()
    check(any(p in (".git", ".git/") for p in patterns) and any(p.startswith("build") for p in patterns),
          ".dockerignore keeps .git and build folders out of the context")
    for name in ("sagad", "participant"):
        if name not in by_name:
            continue
        chain = stage_chain(stages, by_name[name])
        check(chain[-1]["base"] == "debian:12-slim", "%s image is based on debian:12-slim" % name,
              chain[-1]["base"])
        ins = [i for s in reversed(chain) for i in s["ins"]]
        users = [arg for word, arg in ins if word == "USER"]
        user = users[-1].split(":")[0] if users else "root"
        check(user not in ("root", "0"), "%s image runs as a non-root USER" % name, user)
        installs = " ".join(arg for word, arg in ins if word == "RUN" and "apt-get install" in arg)
        pkgs = set(re.findall(r"(?<![-\w])([a-z0-9][a-z0-9.+-]+)", installs.split("apt-get install", 1)[-1]))
        dev = sorted(p for p in pkgs if p.endswith("-dev") or p in ("build-essential", "cmake", "gcc",
                                                                    "pkg-config", "make"))
        check(not dev, "%s image has no build tools or -dev packages" % name, ", ".join(dev))
        for lib in ("librdkafka1", "librabbitmq4", "libpq5", "libjansson4", "libmicrohttpd12", "libssl3"):
            check(lib in pkgs, "%s image installs %s" % (name, lib))
        for word, arg in ins:
            if word == "COPY" and "--from" not in arg:
                for srcpath in arg.split()[:-1]:
                    exists = os.path.exists(os.path.join(SRC, srcpath))
                    check(exists and not ignored(srcpath.rstrip("/"), patterns),
                          "%s image's COPY source %s is in the build context" % (name, srcpath))
    final = stage_chain(stages, by_name.get("sagad", stages[-1]))
    ins = [i for s in reversed(final) for i in s["ins"]]
    get = lambda w: [arg for word, arg in ins if word == w]
    check(any("9464" in a.split() for a in get("EXPOSE")), "sagad image EXPOSEs 9464")
    hc = get("HEALTHCHECK")
    check(len(hc) == 1 and "/healthz" in hc[0], "sagad image has a HEALTHCHECK on /healthz", str(hc))
    if hc:
        m = re.search(r'CMD\s+\["([^"]+)"', hc[0])
        tool = m.group(1) if m else ""
        copied = any(a.split()[-1] == tool for a in get("COPY"))
        check(copied or tool in ("/bin/bash", "bash"), "the health check's program is in the image", tool)
    ep = get("ENTRYPOINT")
    check(bool(ep) and re.search(r'"[^"]*sagad"\s*\]\s*$', ep[-1]) is not None,
          "sagad image's ENTRYPOINT is sagad", str(ep))
    env = " ".join(get("ENV"))
    check("SAGA_HTTP_LISTEN=0.0.0.0:9464" in env, "sagad image listens on all interfaces (SAGA_HTTP_LISTEN)")
    return names


# ---- compose -----------------------------------------------------------------

def check_compose(stage_names, channels):
    path = os.path.join(DEPLOY, "compose.yaml")
    try:
        doc = load_all(path)[0]
    except (OSError, yaml.YAMLError, IndexError) as e:
        check(False, "deploy/compose.yaml parses", str(e))
        return
    services = doc.get("services", {})
    expected = ["kafka", "kafka-init", "rabbitmq", "postgres", "migrate", "sagad", "participant"]
    missing = [s for s in expected if s not in services]
    check(not missing, "compose has the services " + ", ".join(expected), ", ".join(missing))
    if missing:
        return
    dependents = {}
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            dependents.setdefault(dep, []).append((name, (cond or {}).get("condition")))
            check(dep in services, "compose: %s depends on an existing service %s" % (name, dep))
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        if hc:
            check(bool(hc.get("test")) and not hc.get("disable"), "compose: %s has a health check" % name)
            for dep, cond in dependents.get(name, []):
                check(cond == "service_healthy",
                      "compose: %s waits for %s to be healthy" % (dep, name), str(cond))
        else:
            deps = dependents.get(name, [])
            check(str(svc.get("restart", "no")) == "no" and deps
                  and all(c == "service_completed_successfully" for _, c in deps),
                  "compose: one-shot %s is awaited to completion" % name, str(deps))
    sagad = services["sagad"]
    needs = set((sagad.get("depends_on") or {}).keys())
    check({"postgres", "kafka", "rabbitmq", "migrate"} <= needs,
          "compose: sagad waits for postgres, kafka, rabbitmq and the migration", str(sorted(needs)))
    kafka = services["kafka"]
    kenv = kafka.get("environment", {})
    check(str(kafka.get("image", "")).startswith("apache/kafka:"), "compose: Kafka is apache/kafka")
    roles = set(str(kenv.get("KAFKA_PROCESS_ROLES", "")).split(","))
    check(roles == {"broker", "controller"}, "compose: Kafka runs in KRaft mode as broker and controller")
    check("PLAINTEXT://kafka:9092" in str(kenv.get("KAFKA_ADVERTISED_LISTENERS", "")),
          "compose: Kafka advertises a listener other containers reach (kafka:9092)")
    check("@kafka:" in str(kenv.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")),
          "compose: the KRaft quorum voter is the kafka service")
    cid = str(kenv.get("CLUSTER_ID", ""))
    try:
        ok = len(base64.urlsafe_b64decode(cid + "==")) == 16 and len(cid) == 22
    except ValueError:
        ok = False
    check(ok, "compose: Kafka CLUSTER_ID is a base64 UUID", cid)
    init_cmd = json.dumps(services["kafka-init"].get("command", ""))
    auto = str(kenv.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "")).lower() == "true"
    topics = sorted(c[len("kafka:"):] for c in channels if c.startswith("kafka:"))
    for topic in ["saga.commands", "saga.replies", "saga.events"] + topics:
        check(topic in init_cmd, "compose: kafka-init creates topic %s" % topic,
              "auto-creation %s" % ("on" if auto else "off"))
    check(str(services["postgres"].get("image", "")).startswith("postgres:15"), "compose: PostgreSQL 15")
    check(str(services["rabbitmq"].get("image", "")).startswith("rabbitmq:3"), "compose: RabbitMQ 3")
    mig = services["migrate"]
    argv = " ".join(mig.get("entrypoint", []) + mig.get("command", []))
    check(re.search(r"sagactl\s+migrate", argv) is not None, "compose: migrate runs sagactl migrate", argv)
    for name in ("migrate", "sagad", "participant"):
        svc = services[name]
        build = svc.get("build", {})
        ctx = os.path.normpath(os.path.join(DEPLOY, build.get("context", ".")))
        check(os.path.isfile(os.path.join(ctx, build.get("dockerfile", "Dockerfile"))),
              "compose: %s's Dockerfile exists in its build context" % name)
        check(build.get("target") in stage_names, "compose: %s builds a Dockerfile stage" % name,
              str(build.get("target")))
        env = svc.get("environment", {})
        check(isinstance(env, dict) and "SAGA_DATABASE_URL" in env,
              "compose: %s gets SAGA_DATABASE_URL" % name)
        if name != "participant":
            known = {env_name(k) for k in KEYS}
            unknown = [k for k in env if k.startswith("SAGA_") and k not in known]
            check(not unknown, "compose: %s's SAGA_ variables are configuration keys" % name,
                  ", ".join(unknown))
    pcmd = services["participant"].get("command", [])
    pchans = set()
    for i, a in enumerate(pcmd[:-1]):
        v = str(pcmd[i + 1])
        if a == "--kafka-topic":
            pchans.add("kafka:" + v)
        elif a == "--amqp-queue":
            pchans.add("amqp:/" + v)
        elif a == "--amqp-bind" and v.count(":") == 2:
            ex, key, _queue = v.split(":")
            pchans.add("amqp:%s/%s" % (ex, key))
    for ch in sorted(channels):
        check(ch in pchans, "compose: the participant consumes %s" % ch)
    senv = sagad.get("environment", {})
    check(str(senv.get("SAGA_HTTP_LISTEN", "")).startswith("0.0.0.0:9464"),
          "compose: sagad listens on 0.0.0.0:9464 in its container")
    cmd = sagad.get("command", [])
    conf = cmd[cmd.index("--config") + 1] if "--config" in cmd else None
    mounts = {}
    for v in sagad.get("volumes", []):
        parts = v.split(":")
        mounts[parts[1]] = parts[0]
    check(conf in mounts, "compose: sagad's --config file is mounted", str(conf))
    if conf in mounts:
        check(os.path.normpath(os.path.join(DEPLOY, mounts[conf])) ==
              os.path.normpath(os.path.join(DEPLOY, "config", "sagad.json")),
              "compose: the mounted configuration is deploy/config/sagad.json")


# ---- saga definitions ------------------------------------------------------------

def definition_channels(d):
    """Every channel a definition sends commands or compensations to."""
    out = set()
    for step in d.get("steps", []):
        for member in [step] + step.get("parallel", []):
            for part in ("command", "compensation"):
                ch = (member.get(part) or {}).get("channel")
                if ch:
                    out.add(ch)
    return out


def repo_definition_channels():
    """Channels of the example definitions in sagas/, which the image ships."""
    out = set()
    sdir = os.path.join(SRC, "sagas")
    if not os.path.isdir(sdir):
        return out
    for f in sorted(os.listdir(sdir)):
        if f.endswith(".json") and not f.startswith("."):
            try:
                d = json.loads(read(os.path.join("sagas", f)))
            except ValueError:
                continue
            if isinstance(d, dict) and "steps" in d:
                out |= definition_channels(d)
    return out


# ---- Kubernetes ----------------------------------------------------------------

def check_k8s():
    kdir = os.path.join(DEPLOY, "k8s")
    docs, files = [], sorted(f for f in os.listdir(kdir) if f.endswith((".yaml", ".yml")))
    for f in files:
        for d in load_all(os.path.join(kdir, f)):
            d["__file"] = f
            docs.append(d)
    for d in docs:
        check(bool(d.get("apiVersion")) and bool(d.get("kind")),
              "k8s %s: every document has apiVersion and kind" % d["__file"])
    kust = [d for d in docs if d.get("kind") == "Kustomization"]
    objs = [d for d in docs if d.get("kind") != "Kustomization"]
    for d in objs:
        check(bool((d.get("metadata") or {}).get("name")), "k8s %s: %s has a name" % (d["__file"], d["kind"]))
    if kust:
        listed = set(kust[0].get("resources", []))
        others = {f for f in files if f != kust[0]["__file"]}
        check(listed == others, "k8s: kustomization.yaml lists every manifest",
              "listed %s, present %s" % (sorted(listed), sorted(others)))
    kinds = {d["kind"] for d in objs}
    for k in ("Deployment", "ConfigMap", "Service", "PodDisruptionBudget", "Job", "Secret"):
        check(k in kinds, "k8s: a %s is present" % k)
    get = lambda kind: [d for d in objs if d["kind"] == kind]
    if not get("Deployment"):
        return set()
    dep = get("Deployment")[0]
    secrets = {d["metadata"]["name"]: set((d.get("stringData") or {}).keys()) | set((d.get("data") or {}).keys())
               for d in get("Secret")}
    cms = {d["metadata"]["name"]: d.get("data") or {} for d in get("ConfigMap")}
    spec = dep["spec"]
    check(spec.get("replicas") == 2, "k8s: the Deployment runs 2 replicas")
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    sel = spec.get("selector", {}).get("matchLabels", {})
    check(sel and all(pod_labels.get(k) == v for k, v in sel.items()),
          "k8s: the Deployment's selector matches its pods")
    c = [c for c in pod["containers"] if c["name"] == "sagad"]
    check(bool(c), "k8s: the Deployment has a container sagad")
    if not c:
        return set()
    c = c[0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}

    def probe_ok(name, path):
        pr = (c.get(name) or {}).get("httpGet", {})
        port = pr.get("port")
        port = ports.get(port, port)
        return pr.get("path") == path and port == 9464

    check(probe_ok("readinessProbe", "/readyz"), "k8s: readiness probe is GET /readyz on 9464")
    check(probe_ok("livenessProbe", "/healthz"), "k8s: liveness probe is GET /healthz on 9464")
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    check(csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, "k8s: sagad runs as non-root (runAsNonRoot)")
    check(csc.get("runAsUser", psc.get("runAsUser", 1)) != 0, "k8s: sagad's runAsUser is not 0")
    check(csc.get("allowPrivilegeEscalation") is False, "k8s: sagad cannot escalate privileges")
    res = c.get("resources", {})
    check(bool(res.get("requests")) and bool(res.get("limits")), "k8s: sagad has resource requests and limits")
    env = {e["name"]: e for e in c.get("env", [])}
    for var in ("SAGA_DATABASE_URL", "SAGA_AMQP_URL"):
        ref = (env.get(var, {}).get("valueFrom") or {}).get("secretKeyRef", {})
        check(ref.get("name") in secrets and ref.get("key") in secrets.get(ref.get("name"), ()),
              "k8s: %s comes from a key of the Secret" % var, str(ref))
    check(str(env.get("SAGA_HTTP_LISTEN", {}).get("value", "")).startswith("0.0.0.0:9464"),
          "k8s: sagad listens on 0.0.0.0:9464 in its pod")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    for v in volumes.values():
        if "configMap" in v:
            check(v["configMap"]["name"] in cms, "k8s: volume %s's ConfigMap exists" % v["name"])
    args = c.get("args", [])
    conf = args[args.index("--config") + 1] if "--config" in args else None
    m = mounts.get(conf, {})
    cm = cms.get(volumes.get(m.get("name"), {}).get("configMap", {}).get("name"), {})
    conf_key = m.get("subPath", os.path.basename(conf or ""))
    check(conf_key in cm, "k8s: sagad's --config file is mounted from the config ConfigMap", str(conf))
    topics = set()
    if conf_key in cm:
        try:
            cfg = json.loads(cm[conf_key])
            check(True, "k8s: the config ConfigMap's %s parses as JSON" % conf_key)
            check_config_object(cfg, "k8s ConfigMap %s" % conf_key, complete=False)
            check("database_url" not in cfg and "url" not in cfg.get("amqp", {}),
                  "k8s: the config ConfigMap holds no credentials")
        except ValueError as e:
            check(False, "k8s: the config ConfigMap's %s parses as JSON" % conf_key, str(e))
    sagas_dir = env.get("SAGA_SAGAS_DIR", {}).get("value")
    sm = mounts.get(sagas_dir, {})
    scm = volumes.get(sm.get("name"), {}).get("configMap", {}).get("name")
    check(scm in cms, "k8s: the sagas directory %s is a mounted ConfigMap" % sagas_dir)
    for key, body in cms.get(scm, {}).items():
        try:
            d = json.loads(body)
            check(key.endswith(".json") and re.fullmatch(r"[a-z][a-z0-9_]{0,62}", str(d.get("name")))
                  and d.get("steps"), "k8s: saga definition %s parses and has a name and steps" % key)
            topics |= definition_channels(d)
        except ValueError as e:
            check(False, "k8s: saga definition %s parses as JSON" % key, str(e))
    svc = get("Service")[0] if get("Service") else {}
    ssel = svc.get("spec", {}).get("selector", {})
    check(ssel and all(pod_labels.get(k) == v for k, v in ssel.items()), "k8s: the Service selects sagad's pods")
    sports = svc.get("spec", {}).get("ports", [])
    check(any(p.get("port") == 9464 for p in sports), "k8s: the Service exposes port 9464")
    ann = svc.get("metadata", {}).get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == "9464",
          "k8s: the Service has Prometheus scrape annotations")
    for pdb in get("PodDisruptionBudget"):
        psel = pdb["spec"].get("selector", {}).get("matchLabels", {})
        check(psel and all(pod_labels.get(k) == v for k, v in psel.items()), "k8s: the PodDisruptionBudget selects sagad's pods")
        check(isinstance(pdb["spec"].get("minAvailable"), int) and pdb["spec"]["minAvailable"] < 2
              or "maxUnavailable" in pdb["spec"], "k8s: the PodDisruptionBudget lets one pod go at a time")
    for job in get("Job"):
        jpod = job["spec"]["template"]["spec"]
        jc = jpod["containers"][0]
        argv = " ".join(jc.get("command", []) + jc.get("args", []))
        check(re.search(r"sagactl\s+migrate", argv) is not None, "k8s: the Job runs sagactl migrate", argv)
        check(jpod.get("restartPolicy") in ("OnFailure", "Never"), "k8s: the Job has a valid restartPolicy")
        jenv = {e["name"]: e for e in jc.get("env", [])}
        ref = (jenv.get("SAGA_DATABASE_URL", {}).get("valueFrom") or {}).get("secretKeyRef", {})
        check(ref.get("name") in secrets, "k8s: the Job's SAGA_DATABASE_URL comes from the Secret")
        jsc = jpod.get("securityContext", {})
        check(jc.get("securityContext", {}).get("runAsNonRoot", jsc.get("runAsNonRoot")) is True,
              "k8s: the migration Job runs as non-root")
    return topics


def main():
    check_sources()
    check_yaml_parses()
    check_example_config()
    stage_names = check_dockerfile()
    channels = check_k8s() | repo_definition_channels()
    check(len(channels) > 0, "channels of the saga definitions found")
    check_compose(stage_names, channels)
    check_dashboard(sys.argv[2] if len(sys.argv) > 2 else None)
    check_alerts()
    print("%d failed" % len(failures) if failures else "all deploy checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
