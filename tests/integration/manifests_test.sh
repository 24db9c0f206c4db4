# manifests_test.sh - the deployment files (deploy/k8s/, compose/docker-compose.cluster.yml,
# deploy/Dockerfile): tests/deploy/check_manifests.py's checks of the repository's files, its
# TAP lines passed through, then the same checker on copies broken one field at a time, each of
# which must fail on the check about that field (a checker that passes everything proves
# nothing). Parses files only: no Docker engine, no cluster, no store. About 3 s on 2 cores.
. "$(dirname "$0")/../lib/itest.sh"

ROOT=$(cd -- "$(dirname -- "$0")/../.." && pwd -P)
CHECK=$ROOT/tests/deploy/check_manifests.py
W=$(mktemp -d "$TETHER_TEST_TMP/manifests.XXXXXX")
trap 'rm -rf "$W"; itest_cleanup' EXIT

# Debian's interpreter, which python3-yaml installs into; a python3 earlier on PATH (pyenv, a
# virtualenv) may not have PyYAML
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
python3() { "$PY" "$@"; }
if ! ok "python3 with PyYAML (python3-yaml) is installed" python3 -c 'import yaml'; then
  done_testing
  exit 1
fi
ok "compose/deps.sh installs python3-yaml, the checker's one dependency" \
  grep -qE '^[[:space:]]*python3-yaml([[:space:]]|$)' "$ROOT/compose/deps.sh"

# --- the repository's files: the checker's own lines, numbered on from ours
out=$(python3 "$CHECK" --first $((T_N + 1)) --no-plan 2>&1)
rc=$?
printf '%s\n' "$out"
T_N=$((T_N + $(grep -cE '^(not )?ok ' <<<"$out")))
T_FAILED=$((T_FAILED + $(grep -c '^not ok ' <<<"$out")))
is "$rc" 0 "check_manifests.py passes on the repository's files"

# --- broken copies. One Python run makes every copy (deploy/ and the compose files copied, the
# sources the Dockerfile builds from linked) and applies its case's edit: `d` is the file's
# first YAML document (written back without comments), `text` a non-YAML file's text. It
# prints NAME<TAB>WHAT MUST FAIL<TAB>DESCRIPTION for each case.
CASES=$(python3 - "$ROOT" "$W" <<'EOF'
import os, re, shutil, sys
import yaml

root, work = sys.argv[1], sys.argv[2]
K = "deploy/k8s/"
# (name, file, edit, pattern of the `not ok` line it must cause, description)
cases = [
    ("no-readiness", K + "node-deployment.yaml", 'del node()["readinessProbe"]',
     "readinessProbe is GET /healthz", "without a readiness probe"),
    ("readiness-elsewhere", K + "node-deployment.yaml",
     'node()["readinessProbe"]["httpGet"]["path"] = "/livez"',
     "readinessProbe is GET /healthz", "with readiness on /livez (which says nothing of the actors)"),
    ("liveness-healthz", K + "node-deployment.yaml",
     'node()["livenessProbe"]["httpGet"]["path"] = "/healthz"',
     "livenessProbe is GET /livez", "with liveness on /healthz (every node restarted while a store is down)"),
    ("env-misspelt", K + "node-deployment.yaml",
     'env(node(), "TETHER_NODE_ADDR")["name"] = "TETHER_NODE_ADRESS"',
     "unknown: TETHER_NODE_ADRESS", "with TETHER_NODE_ADDR misspelt"),
    ("config-misspelt", K + "config.yaml",
     'd["data"]["TETHER_SHUTDOWN_GRACE_MS"] = d["data"].pop("TETHER_SHUTDOWN_GRACE")',
     "unknown: TETHER_SHUTDOWN_GRACE_MS", "with a ConfigMap variable no program reads"),
    ("config-supervisors", K + "config.yaml", 'd["data"]["TETHER_INSTANCE"] = "0"',
     "set by the supervisor", "with a variable only the supervisor sets"),
    ("node-id-fixed", K + "node-deployment.yaml",
     'e = env(node(), "TETHER_NODE_ID"); e.pop("valueFrom"); e["value"] = "node"',
     "TETHER_NODE_ID is the pod's name", "with one TETHER_NODE_ID for every pod"),
    ("node-addr-host", K + "node-deployment.yaml",
     'env(node(), "TETHER_NODE_ADDR")["valueFrom"]["fieldRef"]["fieldPath"] = "status.hostIP"',
     "TETHER_NODE_ADDR is the pod's IP", "with TETHER_NODE_ADDR the machine's address"),
    ("pg-url-literal", K + "node-deployment.yaml",
     'e = env(node(), "TETHER_PG_URL"); e.pop("valueFrom"); e["value"] = "postgresql://x/tether"',
     "TETHER_PG_URL comes from a key of a Secret", "with the PostgreSQL URL written in the Deployment"),
    ("event-port-gone", K + "node-deployment.yaml",
     'node()["ports"] = [p for p in node()["ports"] if p["containerPort"] != 7483]',
     "event ports 7480-7483", "without the fourth event port"),
    ("leader-port-gone", K + "node-deployment.yaml",
     'node()["ports"] = [p for p in node()["ports"] if p["containerPort"] != 7479]',
     "the leader port 7479", "without the leader port"),
    ("instances-without-port", K + "config.yaml",
     'd["data"]["TETHER_SV_INSTANCES_STREAM_BROKER"] = "2"',
     "event ports 7480-7484", "with a second stream-broker and no port for it"),
    ("service-links", K + "node-deployment.yaml", 'pod().pop("enableServiceLinks")',
     "enableServiceLinks: false", "with Kubernetes' service links in the nodes' environment"),
    ("replicas-one", K + "node-deployment.yaml", 'd["spec"]["replicas"] = 1',
     "replicas >= 2", "with one replica"),
    ("pdb-none-may-go", K + "node-pdb.yaml",
     'd["spec"].pop("maxUnavailable"); d["spec"]["minAvailable"] = 3',
     "PodDisruptionBudget", "with a PodDisruptionBudget that lets no node go"),
    ("service-selector", K + "node-service.yaml",
     'd["spec"]["selector"]["app.kubernetes.io/component"] = "nodes"',
     "Service selects the node pods", "with a Service selecting no node"),
    ("events-open", K + "node-networkpolicy.yaml", 'd["spec"]["ingress"][1].pop("from")',
     "event ports 7480-7483 from the nodes only", "with the event ports open to every pod"),
    ("second-schema-step", K + "node-deployment.yaml",
     'node()["command"] = ["/opt/tether/deploy/schema.sh"]',
     "exactly one step applies the schema", "with the node container applying the schema too"),
    ("redis-no-claims", K + "stores/redis-statefulset.yaml", 'del d["spec"]["volumeClaimTemplates"]',
     "redis StatefulSet has volumeClaimTemplates", "with Redis on no volume claim"),
    ("redis-password", K + "secret.yaml", 'd["stringData"]["REDIS_PASSWORD"] = "another"',
     "TETHER_REDIS_URL's password", "with Redis's password out of step with its URL"),
    ("not-listed", K + "kustomization.yaml", 'd["resources"].remove("node-pdb.yaml")',
     "listed by a kustomization", "with a manifest its kustomization leaves out"),
    ("listed-missing", K + "kustomization.yaml", 'd["resources"].append("node-hpa.yaml")',
     "every resource deploy/k8s/kustomization.yaml lists exists", "with a kustomization naming a missing file"),
    ("expose-http-only", "deploy/Dockerfile", 'text = re.sub(r"(?m)^EXPOSE .*$", "EXPOSE 8787", text)',
     "EXPOSEs the gateway port, the leader port and the event ports", "with an image exposing no event port"),
    ("user-by-name", "deploy/Dockerfile", 'text = re.sub(r"(?m)^USER .*$", "USER tether", text)',
     "numeric non-root user", "with an image user runAsNonRoot cannot verify"),
    ("asan-image", "deploy/Dockerfile", 'text = text.replace("MODE=release", "MODE=asan")',
     "release build", "with the sanitizer build in the image"),
    ("sql-ignored", "deploy/Dockerfile.dockerignore", 'text = text.replace("!sql/\\n", "")',
     "passes Dockerfile.dockerignore", "with the migrations left out of the build context"),
    ("deps-drift", "compose/deps.sh", 'text = text.replace("libnghttp2-dev", "libnghttp2-dev libzstd-dev")',
     "build packages of compose/deps.sh", "with a build package deps.sh has and the image lacks"),
    ("compose-same-id", "compose/docker-compose.cluster.yml",
     'd["services"]["node2"]["environment"]["TETHER_NODE_ID"] = "node1"',
     "own TETHER_NODE_ID", "compose: with two nodes of one id"),
    ("compose-misspelt", "compose/docker-compose.cluster.yml",
     'd["services"]["node3"]["environment"]["TETHER_LEADER_TTL"] = "10s"',
     "unknown: TETHER_LEADER_TTL", "compose: with a variable no program reads"),
    ("compose-no-wait", "compose/docker-compose.cluster.yml",
     '[d["services"][n]["depends_on"].pop("migrate", None) for n in ("node1", "node2", "node3")]',
     "start after the schema step", "compose: with nodes that do not wait for the schema"),
]

def pod(x=None):
    return (x or d)["spec"]["template"]["spec"]

def node():
    return pod()["containers"][0]

def env(c, name):
    return next(e for e in c["env"] if e["name"] == name)

for name, path, edit, want, desc in cases:
    c = os.path.join(work, name)
    os.makedirs(os.path.join(c, "compose"))
    shutil.copytree(os.path.join(root, "deploy"), os.path.join(c, "deploy"))
    for f in ("docker-compose.yml", "docker-compose.cluster.yml", "deps.sh"):
        shutil.copy(os.path.join(root, "compose", f), os.path.join(c, "compose", f))
    os.symlink(os.path.join(root, "compose", "migrate.sh"), os.path.join(c, "compose", "migrate.sh"))
    for x in ("Makefile", "proto", "actors", "gateway", "supervisor", "examples", "sql"):
        os.symlink(os.path.join(root, x), os.path.join(c, x))
    target = os.path.join(c, path)
    with open(target, encoding="utf-8") as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        docs = list(yaml.safe_load_all(text))
        d = docs[0]
        exec(edit)
        text = yaml.safe_dump_all(docs, sort_keys=False)
    else:
        before = text
        exec(edit)
        assert text != before, f"{name}: the edit changed nothing"
    with open(target, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"{name}\t{want}\t{desc}")
EOF
)
is "$?" 0 "the broken copies are made ($(grep -c . <<<"$CASES") cases)"

# fails_on RC WANT OUT: the checker exited 1 and one of its `not ok` lines has WANT
fails_on() { [[ $1 == 1 ]] && grep -qF -- "$2" <<<"$(grep '^not ok ' <<<"$3")"; }

# every copy checked at once (each run is independent), then reported in the table's order
while IFS=$'\t' read -r name _; do
  [[ -n $name ]] || continue
  { python3 "$CHECK" --root "$W/$name" --repo "$ROOT" --no-plan >"$W/$name.out" 2>&1
    echo $? >"$W/$name.rc"; } &
done <<<"$CASES"
wait

while IFS=$'\t' read -r name want desc; do
  [[ -n $name ]] || continue
  out=$(<"$W/$name.out")
  rc=$(<"$W/$name.rc")
  if ! ok "the checker fails $desc" fails_on "$rc" "$want" "$out"; then
    diag "exit $rc; wanted a 'not ok' line with: $want; got:"
    grep '^not ok ' <<<"$out" | head -n 5 | while IFS= read -r line; do diag "  $line"; done
  fi
done <<<"$CASES"

done_testing
