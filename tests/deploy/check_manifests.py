#!/usr/bin/env python3
"""check_manifests.py [--root DIR] [--repo DIR] [--first N] [--no-plan]

Checks the files that deploy Tether as a cluster without a cluster or a Docker engine to try
them on: the Kubernetes manifests (deploy/k8s/, as their kustomization.yaml files list them),
compose/docker-compose.cluster.yml and deploy/Dockerfile, against what the code does. Prints
one TAP line per check ("ok N - ...", "not ok N - ...: why"), numbered from N (default 1), then
the plan 1..last unless --no-plan (tests/integration/manifests_test.sh passes it: it adds checks
of its own and prints the one plan). Exit 0 when every check passed, 1 otherwise, 100 on bad
usage.

--root is where deploy/, compose/ and the Makefile are read (default: this repository);
--repo is where docs/config.md and the code are read (default: this repository), so a test can
check a broken copy of the manifests against the real variable names.

A TETHER_* variable given to a Tether container must be one the programs read: a name of
docs/config.md (`TETHER_X_<NAME>` there stands for any suffix), or of a configuration table in
the code (`{"TETHER_...", CFG_...}`) that `make docs` has not carried into docs/config.md yet
(named on a `#` line; docs_test.sh fails on the stale page). So a misspelt name fails here
instead of being ignored by the programs. Needs python3 and PyYAML (Debian's python3-yaml, in
compose/deps.sh) only.
"""

import argparse
import fnmatch
import glob
import os
import re
import shlex
import sys
from urllib.parse import urlsplit, parse_qs

import yaml

# ---- TAP -------------------------------------------------------------------------------------


class Tap:
    def __init__(self, first):
        self.n = first - 1
        self.failed = 0

    def check(self, ok, desc, why=""):
        self.n += 1
        if ok:
            print(f"ok {self.n} - {desc}")
        else:
            self.failed += 1
            print(f"not ok {self.n} - {desc}" + (f": {why}" if why else ""))
        return bool(ok)

    def diag(self, text):
        print(f"# {text}")

    def plan(self):
        print(f"1..{self.n}")


# ---- helpers ---------------------------------------------------------------------------------


# libyaml's parser when PyYAML has it (Debian's does): several times faster, same documents
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path):
    """Every document of a YAML file (None documents dropped); raises on a parse error."""
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=SAFE_LOADER) if d is not None]


def read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def duration_ms(text):
    """A Tether duration (docs/config.md: 250, 250ms, 3s, 2m, 1h) in ms, or None."""
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        return None
    return int(m.group(1)) * {None: 1, "ms": 1, "s": 1000, "m": 60000, "h": 3600000}[m.group(2)]


class Names:
    """The TETHER_* names the programs read: docs/config.md's tables (names and <NAME>
    patterns) and the configuration tables of the code."""

    # Set by the supervisor for each child (supervisor/child.c drops any inherited value), so an
    # operator's value is never seen: setting one is a mistake.
    SUPERVISOR_SETS = {"TETHER_CHILD_NAME", "TETHER_INSTANCE", "TETHER_NOTIFY_FD",
                       "TETHER_PARENT_FD", "TETHER_FAULT", "TETHER_FENCING_TOKEN",
                       "TETHER_BUS_EVENTS_LISTEN"}

    def __init__(self, repo):
        self.docs, self.patterns, self.code = set(), [], set()
        for line in read(os.path.join(repo, "docs", "config.md")).splitlines():
            if not line.startswith("|"):
                continue
            cells = line.split("|")
            if len(cells) < 3:
                continue
            for tok in re.findall(r"`([^`]+)`", cells[1]):
                if re.fullmatch(r"TETHER_[A-Z0-9_]+", tok):
                    self.docs.add(tok)
                    continue
                m = re.fullmatch(r"(TETHER_[A-Z0-9_]*)<[A-Z_]+>", tok)
                if m:
                    self.patterns.append(re.compile(re.escape(m.group(1)) + r"[A-Z0-9_]+"))
        for d in ("supervisor", "actors", "gateway"):
            for f in glob.glob(os.path.join(repo, d, "**", "*.c"), recursive=True):
                self.code.update(re.findall(r'\{\s*"(TETHER_[A-Z0-9_]+)"\s*,\s*CFG_', read(f)))

    def in_docs(self, name):
        return name in self.docs or any(p.fullmatch(name) for p in self.patterns)

    def check(self, tap, what, names):
        """One check: every name in names is read by the programs and none is the supervisor's."""
        names = {n for n in names if n.startswith("TETHER_")}
        unknown = sorted(n for n in names if not self.in_docs(n) and n not in self.code)
        theirs = sorted(n for n in names if n in self.SUPERVISOR_SETS)
        pending = sorted(n for n in names if not self.in_docs(n) and n in self.code)
        ok = tap.check(not unknown and not theirs,
                       f"{what}: every TETHER_* variable is one the programs read "
                       "(docs/config.md or the code's configuration tables), none is the "
                       "supervisor's own",
                       "; ".join(filter(None, [
                           ("unknown: " + ", ".join(unknown)) if unknown else "",
                           ("set by the supervisor, not by an operator: " + ", ".join(theirs))
                           if theirs else ""])))
        if pending:
            tap.diag(f"{what}: in the code but not yet in docs/config.md (make docs): "
                     + ", ".join(pending))
        return ok


def selects(selector, labels):
    """A matchLabels-style selector (dict) selects a pod with these labels."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def label_selects(sel, labels):
    """A LabelSelector ({matchLabels, matchExpressions}) selects a pod with these labels; an
    empty one selects nothing here (in a NetworkPolicy it would mean every pod: too broad)."""
    sel = sel or {}
    ml, me = sel.get("matchLabels") or {}, sel.get("matchExpressions") or []
    if not ml and not me:
        return False
    if not all(labels.get(k) == v for k, v in ml.items()):
        return False
    for e in me:
        k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        ok = {"In": labels.get(k) in vals, "NotIn": k not in labels or labels[k] not in vals,
              "Exists": k in labels, "DoesNotExist": k not in labels}.get(op, False)
        if not ok:
            return False
    return True


def quantity(q, kind):
    """CPU in millicores or memory in bytes, from a Kubernetes quantity; None if unreadable."""
    s = str(q)
    if kind == "cpu":
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", s)
        if not m:
            return None
        return float(m.group(1)) * (1 if m.group(2) else 1000)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", s)
    if not m:
        return None
    mult = {None: 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return float(m.group(1)) * mult


def port_matches(port_ref, container, want_number):
    """A probe's or Service's port (a name or a number) reaches want_number on the container."""
    if isinstance(port_ref, int):
        return port_ref == want_number
    for p in container.get("ports") or []:
        if p.get("name") == port_ref:
            return p.get("containerPort") == want_number
    return False


def event_actors(repo):
    """[(name, instances variable)] of the children that publish events (supervisor/children.c:
    the `events` field of struct sv_spec); each instance gets one TCP port on a clustered node."""
    src = read(os.path.join(repo, "supervisor", "children.c"))
    out = []
    for m in re.finditer(r'\{\s*"([a-z-]+)"\s*,\s*"[a-z-]+"\s*,\s*\{[^}]*\}\s*,\s*(true|false)\s*,'
                         r'\s*(true|false)\s*,\s*(NULL|"([A-Z_]+)")', src):
        if m.group(3) == "true":
            out.append((m.group(1), m.group(5)))
    return out


def instances(values, var):
    """What supervisor/children.c makes of TETHER_SV_INSTANCES_<NAME>: 1-16, anything else 1."""
    v = values.get(var) if var else None
    try:
        n = int(str(v).strip())
    except (TypeError, ValueError):
        return 1
    return n if 1 <= n <= 16 else 1


def runs_schema(container):
    """The container applies the schema (deploy/schema.sh or compose/migrate.sh)."""
    argv = " ".join(str(a) for a in (container.get("command") or []) + (container.get("args") or []))
    return re.search(r"(^|[/\s])(schema|migrate)\.sh(\s|$)", argv) is not None


# Field names Kubernetes knows (core/v1, 1.30), for catching a misspelt key that the API server
# would reject, or worse, that a lenient client would drop.
POD_SPEC_KEYS = {
    "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers",
    "dnsConfig", "dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases",
    "hostIPC", "hostNetwork", "hostPID", "hostUsers", "hostname", "imagePullSecrets",
    "initContainers", "nodeName", "nodeSelector", "os", "overhead", "preemptionPolicy",
    "priority", "priorityClassName", "readinessGates", "resourceClaims", "resources",
    "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates", "securityContext",
    "serviceAccount", "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace",
    "subdomain", "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints",
    "volumes",
}
CONTAINER_KEYS = {
    "args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle",
    "livenessProbe", "name", "ports", "readinessProbe", "resizePolicy", "resources",
    "restartPolicy", "securityContext", "startupProbe", "stdin", "stdinOnce",
    "terminationMessagePath", "terminationMessagePolicy", "tty", "volumeDevices",
    "volumeMounts", "workingDir",
}
PROBE_KEYS = {
    "exec", "failureThreshold", "grpc", "httpGet", "initialDelaySeconds", "periodSeconds",
    "successThreshold", "tcpSocket", "terminationGracePeriodSeconds", "timeoutSeconds",
}
PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def pod_of(obj):
    """The pod spec of a workload (CronJob included), or {}."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return ((spec.get("template") or {}).get("spec")) or {}


# ---- the Dockerfile --------------------------------------------------------------------------


class Dockerfile:
    """deploy/Dockerfile as stages of (instruction, argument) pairs, continuation lines joined."""

    def __init__(self, text):
        self.stages = []  # [{"name", "base", "ins": [(op, arg)]}]
        buf = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not buf and (not line or line.startswith("#")):
                continue
            if line.startswith("#"):
                continue
            if line.endswith("\\"):
                buf += line[:-1] + " "
                continue
            buf += line
            op, _, arg = buf.partition(" ")
            buf = ""
            op = op.upper()
            if op == "FROM":
                w = arg.split()
                self.stages.append({"base": w[0] if w else "",
                                    "name": w[2] if len(w) >= 3 and w[1].upper() == "AS" else "",
                                    "ins": []})
            elif self.stages:
                self.stages[-1]["ins"].append((op, arg.strip()))

    def all(self, stage, op):
        return [a for o, a in stage["ins"] if o == op]


def dockerignore_admits(patterns, path):
    """Whether a path of the build context survives the .dockerignore (last match wins; a
    pattern naming a directory covers what is under it)."""
    admitted = True
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip().rstrip("/")
        if not p:
            continue
        parts = path.split("/")
        hit = any(fnmatch.fnmatchcase("/".join(parts[:i]), p) for i in range(1, len(parts) + 1))
        if hit:
            admitted = neg
    return admitted


def apt_packages(run_args):
    """The packages of every `apt-get install` in RUN lines."""
    out = set()
    for arg in run_args:
        for part in re.split(r"&&|;", arg):
            w = part.split()
            if "apt-get" in w and "install" in w:
                out.update(x for x in w[w.index("install") + 1:] if not x.startswith("-"))
    return out


def deps_packages(root):
    """compose/deps.sh's PACKAGES=( ... ) list."""
    m = re.search(r"^PACKAGES=\((.*?)^\)", read(os.path.join(root, "compose", "deps.sh")),
                  re.S | re.M)
    if not m:
        return set()
    words = set()
    for line in m.group(1).splitlines():
        words.update(line.split("#", 1)[0].split())
    return words


def check_docker(tap, root, names, ctx):
    """deploy/Dockerfile against the Makefile, compose/deps.sh and schema.sh. Sets ctx["image"]
    (what the other checks need: the exposed ports, where schema.sh is)."""
    path = os.path.join(root, "deploy", "Dockerfile")
    text = read(path)
    df = Dockerfile(text)
    if not tap.check(len(df.stages) >= 2, "docker: deploy/Dockerfile has a build stage and a "
                     "runtime stage", f"{len(df.stages)} stage(s)"):
        return
    build, run = df.stages[0], df.stages[-1]
    makefile = read(os.path.join(root, "Makefile"))

    # The Makefile's release build: MODE defaults to release, output in build/$(MODE)/bin.
    runs = " ".join(df.all(build, "RUN"))
    m = re.search(r"\bMODE=(\w+)", runs) or re.search(r"^MODE \?= (\w+)", makefile, re.M)
    mode = m.group(1) if m else None
    bindir = f"build/{mode}/bin"
    copies = df.all(run, "COPY")
    from_build = [c for c in copies if c.startswith("--from=")]
    src_dst = [c.split()[1:] for c in from_build]
    tap.check(re.search(r"(^|\s)make\b", runs) and mode == "release"
              and "BUILD=" not in runs and re.search(r"^BUILD \?= build/\$\(MODE\)", makefile, re.M)
              and any(s and s[0].rstrip("/").endswith(bindir) for s in src_dst),
              f"docker: the build stage runs the Makefile's release build and the image takes "
              f"{bindir}/ from it", f"RUN {runs!r}; COPY --from {src_dst}")

    # Every directory the binaries are built from, and the Makefile, are copied and admitted.
    roots = set(re.findall(r"^(?:PROTO_SRC|RTLIB_SRC|GW_SRC|SV_SRC|CTL_SRC|ECHO_SRC|ACTOR_DIRS)"
                           r"\s*:=.*?\$\(wildcard ([a-z_]+)/", makefile, re.M))
    built = {c.split()[0].rstrip("/") for c in df.all(build, "COPY") if not c.startswith("--")}
    ign = read(os.path.join(root, "deploy", "Dockerfile.dockerignore")).splitlines()
    ign = [p for p in ign if p.strip() and not p.lstrip().startswith("#")]
    want = sorted(roots | {"Makefile"})
    lacking = [d for d in want if d not in built]
    context = [c.split()[0] for st in df.stages for c in df.all(st, "COPY")
               if not c.startswith("--")]
    barred = [c for c in context if not dockerignore_admits(ign, c.rstrip("/"))]
    missing = [c for c in context if not os.path.exists(os.path.join(root, c))]
    tap.check(roots and not lacking and not barred and not missing,
              f"docker: the build stage copies what the Makefile builds from ({', '.join(want)}), "
              "and every COPY source exists and passes Dockerfile.dockerignore",
              "; ".join(filter(None, [
                  ("not copied: " + ", ".join(lacking)) if lacking else "",
                  ("excluded by the dockerignore: " + ", ".join(barred)) if barred else "",
                  ("no such path: " + ", ".join(missing)) if missing else ""])))

    # The build half of deps.sh (compiler and -dev packages; not the fuzzers' clang runtime).
    deps = deps_packages(root)
    dev = {p for p in deps if p.endswith("-dev") and not p.startswith("libclang")}
    dev |= {p for p in ("gcc", "make", "pkg-config") if p in deps}
    have = apt_packages(df.all(build, "RUN"))
    tap.check(dev and dev <= have,
              f"docker: the build stage installs the build packages of compose/deps.sh "
              f"({len(dev)})", "missing: " + ", ".join(sorted(dev - have)))
    rt = apt_packages(df.all(run, "RUN"))
    tap.check(any(p.startswith("postgresql-client") for p in rt) and "curl" in rt,
              "docker: the runtime stage has psql (compose/migrate.sh) and curl (deploy/schema.sh, "
              "health checks)", f"installs {sorted(rt)}")

    # Where the programs and the schema files land.
    dst = {}
    for c in copies:
        w = [x for x in c.split() if not x.startswith("--")]
        if len(w) == 2:
            dst[w[0].rstrip("/")] = w[1].rstrip("/")
    bin_dst = next((s[1].rstrip("/") for s in src_dst if len(s) == 2 and
                    s[0].rstrip("/").endswith(bindir)), "")
    cmd = " ".join(df.all(run, "ENTRYPOINT") + df.all(run, "CMD"))
    tap.check(bin_dst and re.search(re.escape(bin_dst) + r"/supervisor\b", cmd),
              f"docker: the image starts {bin_dst or '?'}/supervisor (the node's tree)", f"{cmd!r}")
    schema = dst.get("deploy/schema.sh", "")
    prefix = schema[:-len("/deploy/schema.sh")] if schema.endswith("/deploy/schema.sh") else None
    ok = (prefix is not None and dst.get("compose/migrate.sh") == prefix + "/compose/migrate.sh"
          and dst.get("sql") == prefix + "/sql")
    tap.check(ok, "docker: deploy/schema.sh, compose/migrate.sh and sql/ keep their places "
              "relative to each other (schema.sh finds the others from its own directory)",
              f"copied to {dst}")
    ctx["schema"] = schema

    users = df.all(run, "USER")
    u = users[-1].split(":")[0] if users else "0"
    tap.check(u.isdigit() and int(u) != 0, "docker: the image runs as a numeric non-root user "
              "(runAsNonRoot can verify it)", f"USER {users[-1] if users else 'none'}")

    envs = set()
    for e in df.all(run, "ENV"):
        envs.update(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", e))
    names.check(tap, "docker: the image's ENV", envs)

    exposed = set()
    for e in df.all(run, "EXPOSE"):
        for tok in e.split():
            tok = tok.split("/")[0]
            lo, _, hi = tok.partition("-")
            if lo.isdigit():
                exposed.update(range(int(lo), int(hi or lo) + 1))
    ctx["exposed"] = exposed


# ---- Kubernetes ------------------------------------------------------------------------------


def kustomize(dirpath, tap, root, seen_files):
    """Walks a kustomization: returns (objects as (file, doc), images entries). Checks that it
    parses and that each resource it lists exists (a directory must hold a kustomization)."""
    kfile = os.path.join(dirpath, "kustomization.yaml")
    rel = os.path.relpath(kfile, root)
    try:
        kdocs = load_yaml(kfile)
        k = kdocs[0] if kdocs else {}
    except (OSError, yaml.YAMLError) as e:
        tap.check(False, f"k8s: {rel} parses", str(e).splitlines()[0])
        return [], []
    seen_files.add(os.path.normpath(kfile))
    objects, images = [], list(k.get("images") or [])
    resources = k.get("resources") or []
    missing = [r for r in resources if not os.path.exists(os.path.join(dirpath, r))]
    tap.check(bool(resources) and not missing,
              f"k8s: every resource {rel} lists exists ({len(resources)})",
              "missing: " + ", ".join(missing) if missing else "lists none")
    for r in resources:
        path = os.path.normpath(os.path.join(dirpath, r))
        if os.path.isdir(path):
            if os.path.exists(os.path.join(path, "kustomization.yaml")):
                o, i = kustomize(path, tap, root, seen_files)
                objects += o
                images += i
            else:
                tap.check(False, f"k8s: {os.path.relpath(path, root)} holds a kustomization.yaml")
        elif os.path.isfile(path):
            seen_files.add(path)
            try:
                docs = load_yaml(path)
                ok = all(isinstance(d, dict) and d.get("apiVersion") and d.get("kind")
                         and (d.get("metadata") or {}).get("name") for d in docs) and docs
                tap.check(bool(ok), f"k8s: {os.path.relpath(path, root)} parses, each object "
                          "with apiVersion, kind and metadata.name")
                objects += [(os.path.relpath(path, root), d) for d in docs if isinstance(d, dict)]
            except yaml.YAMLError as e:
                tap.check(False, f"k8s: {os.path.relpath(path, root)} parses",
                          str(e).replace("\n", " "))
    return objects, images


def env_of(container, objs):
    """(names, values, refs_missing) of a container: env entries and envFrom ConfigMap/Secret
    keys. values maps a name to its literal value (explicit env wins over envFrom), or to the
    valueFrom dict."""
    names, values, missing = set(), {}, []
    for src in container.get("envFrom") or []:
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = src.get(key)
            if not ref:
                continue
            obj = objs.get((kind, ref.get("name")))
            if obj is None:
                missing.append(f"{kind} {ref.get('name')}")
                continue
            data = dict(obj.get("data") or {})
            data.update(obj.get("stringData") or {})
            prefix = src.get("prefix", "")
            for k, v in data.items():
                names.add(prefix + k)
                values.setdefault(prefix + k, v)
    for e in container.get("env") or []:
        n = e.get("name")
        names.add(n)
        values[n] = e["value"] if "value" in e else e.get("valueFrom")
    return names, values, missing


def secret_value(objs, ref):
    """The value a secretKeyRef names in the manifests' Secrets (stringData), or None."""
    if not isinstance(ref, dict):
        return None
    sec = objs.get(("Secret", ref.get("name")))
    if not sec:
        return None
    return (sec.get("stringData") or {}).get(ref.get("key"))


def check_k8s(tap, root, names, ctx):
    kdir = os.path.join(root, "deploy", "k8s")
    seen = set()
    objects, images = kustomize(kdir, tap, root, seen)

    # A manifest its kustomization leaves out is never applied: say so. A directory with a
    # kustomization of its own that nothing includes (stores/ once the stores are external) is
    # a separate one, not checked here.
    stray = []
    for dirpath, _, files in os.walk(kdir):
        home = dirpath
        while not os.path.exists(os.path.join(home, "kustomization.yaml")) and home != kdir:
            home = os.path.dirname(home)
        if os.path.normpath(os.path.join(home, "kustomization.yaml")) not in seen:
            continue
        for f in files:
            p = os.path.normpath(os.path.join(dirpath, f))
            if f.endswith((".yaml", ".yml")) and p not in seen:
                stray.append(os.path.relpath(p, root))
    tap.check(not stray, "k8s: every manifest in deploy/k8s is listed by a kustomization",
              "not listed: " + ", ".join(sorted(stray)))

    objs = {}
    dups = []
    for _, d in objects:
        key = (d.get("kind"), (d.get("metadata") or {}).get("name"))
        if key in objs:
            dups.append(f"{key[0]}/{key[1]}")
        objs[key] = d
    tap.check(not dups, "k8s: no object is defined twice", ", ".join(dups))

    deps = [d for _, d in objects if d.get("kind") == "Deployment"]
    if not tap.check(len(deps) == 1, "k8s: one Deployment runs the nodes",
                     f"found {len(deps)}"):
        return
    dep = deps[0]
    spec = dep.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    pod_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    containers = pod.get("containers") or []
    inits = pod.get("initContainers") or []
    if not tap.check(bool(containers), "k8s: the node Deployment has a container"):
        return
    node = containers[0]
    _, values, _ = env_of(node, objs)

    # --- fields a pod spec may have (typos)
    bad = []
    for _, d in objects:
        if d.get("kind") in WORKLOADS + ("CronJob",):
            ps = pod_of(d)
            bad += [f"{d['kind']} {d['metadata']['name']}: {k}" for k in ps
                    if k not in POD_SPEC_KEYS]
            for c in (ps.get("containers") or []) + (ps.get("initContainers") or []):
                bad += [f"container {c.get('name')}: {k}" for k in c if k not in CONTAINER_KEYS]
                for p in ("livenessProbe", "readinessProbe", "startupProbe"):
                    bad += [f"{c.get('name')}.{p}: {k}" for k in (c.get(p) or {})
                            if k not in PROBE_KEYS]
    tap.check(not bad, "k8s: pod specs, containers and probes use only Kubernetes' field names",
              "unknown: " + ", ".join(bad))

    # --- image
    image = node.get("image") or ""
    image_name = re.split(r"[:@]", image)[0] if image else ""
    same = all(c.get("image") == image for c in inits)
    listed = any(i.get("name") == image_name for i in images)
    tap.check(bool(image) and same and listed,
              f"k8s: the node image ({image or 'none'}) is set, the same for its init step, and "
              "kustomization.yaml's images entry names it",
              "" if image else "no image")

    replicas = spec.get("replicas", 1)
    tap.check(isinstance(replicas, int) and replicas >= 2,
              f"k8s: the node Deployment has replicas >= 2 ({replicas})")
    ru = ((spec.get("strategy") or {}).get("rollingUpdate")) or {}
    mu, ms = ru.get("maxUnavailable", "25%"), ru.get("maxSurge", "25%")
    tap.check((spec.get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
              and mu in (0, 1) and (mu == 1 or (isinstance(ms, int) and ms >= 1)),
              f"k8s: the rollout replaces nodes one by one (maxUnavailable {mu}, maxSurge {ms})")
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    tap.check(selects(sel, pod_labels), "k8s: the Deployment's selector matches its pod labels",
              f"selector {sel}, labels {pod_labels}")

    # --- the schema: applied by exactly one step, before the node starts
    steps = []
    for _, d in objects:
        if d.get("kind") not in WORKLOADS + ("CronJob",):
            continue
        ps = pod_of(d)
        for where in ("initContainers", "containers"):
            for c in ps.get(where) or []:
                if runs_schema(c):
                    steps.append((d, where, c))
    ok, why = False, f"{len(steps)} container(s) apply it"
    if len(steps) == 1:
        d, where, c = steps[0]
        argv = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
        ok = ((d is dep and where == "initContainers") or d.get("kind") == "Job") and \
            (not ctx.get("schema") or ctx["schema"] in argv)
        why = f"{d.get('kind')} {d['metadata']['name']} {where} {c.get('name')}: {argv}"
    tap.check(ok, "k8s: exactly one step applies the schema (deploy/schema.sh, where the image has "
              "it): the node pod's init container or a Job, never the node itself", why)

    # --- ports
    http_port = int(values.get("TETHER_HTTP_PORT") or 8787)
    ev_first = int(values.get("TETHER_BUS_EVENTS_PORT") or 7480)
    actors = event_actors(ctx["repo"])
    n_ev = sum(instances(values, var) for _, var in actors)
    ev_last = ev_first + n_ev - 1
    ctx["events"] = n_ev
    tap.check(len(actors) >= 4, "k8s: supervisor/children.c names the actors with event sockets "
              f"({', '.join(a for a, _ in actors)})", "the table could not be read")
    ports = node.get("ports") or []
    http = [p for p in ports if p.get("containerPort") == http_port and p.get("name")]
    tap.check(bool(http), f"k8s: the gateway port {http_port} (TETHER_HTTP_PORT) is a named "
              "containerPort")
    by_num = {p.get("containerPort"): p for p in ports}
    lacking = [n for n in range(ev_first, ev_last + 1) if n not in by_num or
               not by_num[n].get("name") or by_num[n].get("protocol", "TCP") != "TCP"]
    pnames = [p.get("name") for p in ports if p.get("name")]
    badnames = [n for n in pnames if not PORT_NAME.fullmatch(n)]
    tap.check(n_ev and not lacking and not badnames and len(set(pnames)) == len(pnames),
              f"k8s: the {n_ev} event ports {ev_first}-{ev_last} (TETHER_BUS_EVENTS_PORT, one "
              "per instance of each actor with events) are named TCP containerPorts, names "
              "unique and valid",
              (f"missing or unnamed: {lacking} " if lacking else "")
              + (f"bad names: {badnames}" if badnames else ""))
    leader_port = int(values.get("TETHER_BUS_LEADER_PORT") or 7479)
    lp = by_num.get(leader_port) or {}
    tap.check(bool(lp.get("name")) and lp.get("protocol", "TCP") == "TCP" and
              not ev_first <= leader_port <= ev_last and leader_port != http_port,
              f"k8s: the leader port {leader_port} (TETHER_BUS_LEADER_PORT: the leader's "
              "clickhouse-replicator, for the other nodes' session lists) is a named TCP "
              "containerPort apart from the others", f"port entry {lp}" if lp else "missing")
    exposed = ctx.get("exposed")
    if exposed is not None:
        want = {http_port, leader_port, *range(ev_first, ev_last + 1)}
        tap.check(want <= exposed, f"docker: the image EXPOSEs the gateway port, the leader "
                  f"port and the event ports {ev_first}-{ev_last}", "missing: " + ", ".join(
                      str(p) for p in sorted(want - exposed)))

    # --- probes: readiness is the node's health; liveness only that a gateway answers, since
    # /healthz is 503 while a store is down and restarting nodes brings no store back
    rd = (node.get("readinessProbe") or {}).get("httpGet") or {}
    tap.check(rd.get("path") == "/healthz" and port_matches(rd.get("port"), node, http_port),
              "k8s: the readinessProbe is GET /healthz on the gateway port (every actor of the "
              "node up, docs/gateway.md)", f"httpGet {rd}" if rd else "none")
    lv = (node.get("livenessProbe") or {}).get("httpGet") or {}
    tap.check(lv.get("path") == "/livez" and port_matches(lv.get("port"), node, http_port),
              "k8s: the livenessProbe is GET /livez on the gateway port (a gateway answers; "
              "/healthz would restart every node while a store is down)",
              f"httpGet {lv}" if lv else "none")

    svc_names = [d["metadata"]["name"] for _, d in objects if d.get("kind") == "Service"]
    clash = [n for n in svc_names if n.upper().replace("-", "_").startswith("TETHER")]
    tap.check(pod.get("enableServiceLinks") is False or not clash,
              "k8s: the node pods set enableServiceLinks: false (Services named tether* would "
              "put TETHER_* variables of Kubernetes' own into the nodes' environment)",
              "Services " + ", ".join(clash))
    tap.check(values.get("TETHER_HTTP_HOST") == "0.0.0.0",
              "k8s: TETHER_HTTP_HOST is 0.0.0.0 (the default 127.0.0.1 is out of the probes' and "
              "the Service's reach)", f"got {values.get('TETHER_HTTP_HOST')!r}")

    def field_ref(name):
        v = values.get(name)
        return isinstance(v, dict) and (v.get("fieldRef") or {}).get("fieldPath")

    tap.check(field_ref("TETHER_NODE_ID") == "metadata.name",
              "k8s: TETHER_NODE_ID is the pod's name (downward API, metadata.name)",
              f"got {values.get('TETHER_NODE_ID')!r}")
    tap.check(field_ref("TETHER_NODE_ADDR") == "status.podIP",
              "k8s: TETHER_NODE_ADDR is the pod's IP (downward API, status.podIP)",
              f"got {values.get('TETHER_NODE_ADDR')!r}")

    urls = {}
    for var in ("TETHER_PG_URL", "TETHER_REDIS_URL", "TETHER_CH_URL"):
        v = values.get(var)
        ref = (v or {}).get("secretKeyRef") if isinstance(v, dict) else None
        val = secret_value(objs, ref)
        if val is not None:
            urls[var] = val
        tap.check(val is not None, f"k8s: {var} comes from a key of a Secret in the manifests",
                  f"got {v!r}")
    for c in inits:
        _, iv, _ = env_of(c, objs)
        for var in ("TETHER_PG_URL", "TETHER_CH_URL"):
            if runs_schema(c):
                w = iv.get(var)
                tap.check(isinstance(w, dict) and w == values.get(var),
                          f"k8s: the schema step's {var} is the node's", f"got {w!r}")

    probs = []
    u = urlsplit(urls.get("TETHER_PG_URL", ""))
    if u.scheme not in ("postgresql", "postgres") or not u.hostname or not u.path.strip("/"):
        probs.append("TETHER_PG_URL is no postgresql://host/db")
    u = urlsplit(urls.get("TETHER_REDIS_URL", ""))
    q = parse_qs(u.query)
    if u.scheme != "redis" or not u.hostname or set(q) - {"cluster"} or \
            any(v not in ("0", "1") for v in q.get("cluster", [])):
        probs.append("TETHER_REDIS_URL is no redis://[:password@]host:port[/db][?cluster=0|1]")
    u = urlsplit(urls.get("TETHER_CH_URL", ""))
    if u.scheme not in ("http", "https") or not u.hostname:
        probs.append("TETHER_CH_URL is no http(s)://host:port")
    tap.check(not probs, "k8s: the store URLs have the forms the programs parse (docs/config.md)",
              "; ".join(probs))

    for c in [node] + inits:
        n, _, miss = env_of(c, objs)
        names.check(tap, f"k8s: container {c.get('name')}", n)
        if miss:
            tap.check(False, f"k8s: container {c.get('name')}'s envFrom names objects of the "
                      "manifests", "missing " + ", ".join(miss))

    res = node.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    probs = []
    for k in ("cpu", "memory"):
        r, li = quantity(req.get(k), k), quantity(lim.get(k), k)
        if r is None or li is None:
            probs.append(f"{k} request and limit needed")
        elif r > li:
            probs.append(f"{k} request above its limit")
    tap.check(not probs, "k8s: the node container has cpu and memory requests and limits "
              f"(requests {req}, limits {lim})", "; ".join(probs))

    grace = duration_ms(values.get("TETHER_SHUTDOWN_GRACE") or "10s")
    kill_after = duration_ms(values.get("TETHER_SV_KILL_AFTER") or "5s")
    prestop = 0
    cmd = (((node.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command")
    if cmd and cmd[0] in ("sleep", "/bin/sleep") and len(cmd) == 2:
        prestop = int(float(cmd[1]) * 1000)
    sleep = (((node.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {})
    prestop += int(sleep.get("seconds", 0)) * 1000
    tgps = pod.get("terminationGracePeriodSeconds", 30) * 1000
    need = prestop + (grace or 0) + (kill_after or 0)
    tap.check(grace is not None and tgps > need,
              f"k8s: terminationGracePeriodSeconds ({tgps // 1000} s) outlasts the preStop "
              f"({prestop // 1000} s) + TETHER_SHUTDOWN_GRACE + TETHER_SV_KILL_AFTER "
              f"({need / 1000:g} s)")

    # --- Service
    svcs = [d for _, d in objects if d.get("kind") == "Service"
            and selects((d.get("spec") or {}).get("selector") or {}, pod_labels)]
    ok, why = False, "no Service selects the node pods"
    if svcs:
        s = svcs[0]
        sp = s.get("spec") or {}
        p80 = [p for p in sp.get("ports") or [] if p.get("port") == 80]
        tgt = p80[0].get("targetPort") if p80 else None
        ok = (sp.get("type", "ClusterIP") == "ClusterIP" and p80
              and isinstance(tgt, str) and port_matches(tgt, node, http_port))
        why = f"type {sp.get('type', 'ClusterIP')}, port 80 -> {tgt!r}"
    tap.check(bool(ok), "k8s: a ClusterIP Service selects the node pods, port 80 to the named "
              "gateway port", why)

    # --- every other workload, for "selects only the nodes"
    others = []
    for _, d in objects:
        if d.get("kind") in WORKLOADS and d is not dep:
            others.append(((d.get("spec") or {}).get("template") or {}).get("metadata", {})
                          .get("labels") or {})
    pdbs = [d for _, d in objects if d.get("kind") == "PodDisruptionBudget"]
    ok, why = False, "no PodDisruptionBudget"
    for p in pdbs:
        sp = p.get("spec") or {}
        psel = sp.get("selector") or {}
        if not label_selects(psel, pod_labels):
            continue
        stray = any(label_selects(psel, o) for o in others)
        mina, maxu = sp.get("minAvailable"), sp.get("maxUnavailable")
        budget = (isinstance(maxu, int) and 1 <= maxu < replicas) or \
                 (isinstance(mina, int) and 1 <= mina <= replicas - 1)
        ok = budget and not stray
        why = f"minAvailable {mina}, maxUnavailable {maxu}" + (", selects store pods" if stray
                                                               else "")
        break
    tap.check(ok, "k8s: a PodDisruptionBudget selects the node pods (only them) and lets some, "
              "not all, go at once", why)

    def covers(rule, port):
        for p in rule.get("ports") or [{}]:
            lo = p.get("port")
            hi = p.get("endPort", lo)
            if p.get("protocol", "TCP") == "TCP" and (
                    lo is None or (isinstance(lo, int) and lo <= port <= hi)):
                return True
        return False

    def peer_is_nodes(peer):
        """A peer that is the node pods and no other workload's."""
        ps = peer.get("podSelector")
        return (not peer.get("namespaceSelector") and not peer.get("ipBlock")
                and label_selects(ps, pod_labels) and not any(label_selects(ps, o)
                                                              for o in others))

    def open_to_all(rules, port):
        return any(covers(r, port) and not r.get("from") for r in rules)

    def nodes_only(rules, port):
        """Port admitted from the nodes, and from nothing else."""
        hits = [r for r in rules if covers(r, port)]
        return bool(hits) and all(r.get("from") and all(peer_is_nodes(f) for f in r["from"])
                                  for r in hits)

    nps = [d for _, d in objects if d.get("kind") == "NetworkPolicy"]
    node_nps = [d for d in nps
                if label_selects((d.get("spec") or {}).get("podSelector"), pod_labels)]
    if node_nps:
        rules = [r for d in node_nps for r in (d.get("spec") or {}).get("ingress") or []]
        tap.check(open_to_all(rules, http_port) and
                  all(nodes_only(rules, p) for p in (leader_port, *range(ev_first, ev_last + 1))),
                  f"k8s: the NetworkPolicy admits the gateway port from anywhere, the leader port "
                  f"and the event ports {ev_first}-{ev_last} from the nodes only")

    # --- stores
    stores = {"postgres": ("TETHER_PG_URL", 5432), "redis": ("TETHER_REDIS_URL", 6379),
              "clickhouse": ("TETHER_CH_URL", 8123)}
    for store, (var, default_port) in stores.items():
        sts = [d for _, d in objects if d.get("kind") == "StatefulSet" and any(
            store in (c.get("image") or "") for c in pod_of(d).get("containers") or [])]
        if not sts:
            tap.check(True, f"k8s: {store} is external (no StatefulSet) # SKIP")
            continue
        s = sts[0]
        sp = s.get("spec") or {}
        tpl = sp.get("template") or {}
        vcts = [(v.get("metadata") or {}).get("name") for v in sp.get("volumeClaimTemplates") or []]
        mounts = [m.get("name") for c in (tpl.get("spec") or {}).get("containers") or []
                  for m in c.get("volumeMounts") or []]
        tap.check(bool(vcts) and all(v in mounts for v in vcts),
                  f"k8s: the {store} StatefulSet has volumeClaimTemplates, mounted",
                  f"claims {vcts}, mounts {mounts}")
        c0 = ((tpl.get("spec") or {}).get("containers") or [{}])[0]
        argv = [str(a) for a in (c0.get("command") or []) + (c0.get("args") or [])]
        _, sv, _ = env_of(c0, objs)
        u = urlsplit(str(urls.get(var) or ""))
        if store == "postgres":
            joined = " ".join(argv)
            tap.check(re.search(r"(^|\s)wal_level=logical(\s|$)", joined) is not None,
                      "k8s: the postgres StatefulSet sets wal_level=logical (the "
                      "clickhouse-replicator's slot)", f"argv {argv}")
            pw = sv.get("POSTGRES_PASSWORD")
            pw = secret_value(objs, (pw or {}).get("secretKeyRef")) if isinstance(pw, dict) \
                else pw
            tap.check(pw is not None and u.password == pw,
                      "k8s: TETHER_PG_URL's password is the postgres StatefulSet's "
                      "POSTGRES_PASSWORD")
        if store == "redis":
            pairs = dict(zip(argv, argv[1:]))
            tap.check(pairs.get("--appendonly") == "yes"
                      and pairs.get("--maxmemory-policy") == "noeviction",
                      "k8s: the redis StatefulSet sets appendonly yes and noeviction",
                      f"argv {argv}")
            rp = pairs.get("--requirepass")
            m = re.fullmatch(r"\$\((\w+)\)", rp or "")
            if m:
                rv = sv.get(m.group(1))
                rp = secret_value(objs, (rv or {}).get("secretKeyRef")) if isinstance(rv, dict) \
                    else rv
            tap.check((rp or None) == (u.password or None),
                      "k8s: TETHER_REDIS_URL's password is the redis StatefulSet's --requirepass")
        labels = (tpl.get("metadata") or {}).get("labels") or {}
        ssvc = [d for _, d in objects if d.get("kind") == "Service"
                and selects((d.get("spec") or {}).get("selector") or {}, labels)]
        ok, why = False, "no Service selects its pods"
        if ssvc:
            name = ssvc[0]["metadata"]["name"]
            sports = [p.get("port") for p in (ssvc[0].get("spec") or {}).get("ports") or []]
            ok = (sp.get("serviceName") == name and u.hostname == name
                  and (u.port or default_port) in sports)
            why = (f"serviceName {sp.get('serviceName')!r}, Service {name} ports {sports}, "
                   f"{var} host {u.hostname}:{u.port or default_port}")
        tap.check(ok, f"k8s: a Service fronts the {store} StatefulSet and {var} names it", why)
        snps = [d for d in nps
                if label_selects((d.get("spec") or {}).get("podSelector"), labels)]
        port = u.port or default_port
        rules = [r for d in snps for r in (d.get("spec") or {}).get("ingress") or []]
        tap.check(snps and nodes_only(rules, port),
                  f"k8s: a NetworkPolicy admits the nodes, and only them, to {store}'s port {port}",
                  "no NetworkPolicy selects its pods" if not snps else f"rules {rules}")


# ---- compose ---------------------------------------------------------------------------------


def compose_env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v
        return out
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def compose_argv(svc, key="command"):
    c = svc.get(key) or []
    return [str(a) for a in (c if isinstance(c, list) else shlex.split(str(c)))]


def check_compose(tap, root, names, ctx):
    base = os.path.join(root, "compose", "docker-compose.yml")
    try:
        load_yaml(base)
        tap.check(True, "compose: docker-compose.yml still parses")
    except (OSError, yaml.YAMLError) as e:
        tap.check(False, "compose: docker-compose.yml still parses", str(e).replace("\n", " "))

    path = os.path.join(root, "compose", "docker-compose.cluster.yml")
    try:
        docs_ = load_yaml(path)
        d = docs_[0] if docs_ else {}
    except (OSError, yaml.YAMLError) as e:
        tap.check(False, "compose: docker-compose.cluster.yml parses", str(e).replace("\n", " "))
        return
    services = d.get("services") or {}
    tap.check(bool(services), "compose: docker-compose.cluster.yml parses, with services")

    nodes = {n: s for n, s in services.items() if "TETHER_NODE_ID" in compose_env(s)}
    if not tap.check(len(nodes) == 3, f"compose: three node services ({', '.join(nodes)})",
                     f"found {len(nodes)}"):
        return
    envs = {n: compose_env(s) for n, s in nodes.items()}
    ids = [e["TETHER_NODE_ID"] for e in envs.values()]
    # the leader lock's owner is <node id>:<pid>, and the pid is 1 in every container: two nodes
    # with one id would each take the other's lock for its own
    tap.check(len(set(ids)) == 3 and all(ids), f"compose: each node has its own TETHER_NODE_ID "
              f"({', '.join(ids)})")
    wrong = [n for n, e in envs.items() if e.get("TETHER_NODE_ADDR") != n]
    tap.check(not wrong, "compose: each node's TETHER_NODE_ADDR is its service name (what the "
              "other nodes resolve)",
              "wrong: " + ", ".join(f"{n}={envs[n].get('TETHER_NODE_ADDR')!r}" for n in wrong))
    nohc = [n for n, s in nodes.items()
            if "/healthz" not in " ".join(map(str, ((s.get("healthcheck") or {})
                                                    .get("test") or [])))]
    tap.check(not nohc, "compose: each node has a healthcheck on /healthz",
              "none on " + ", ".join(nohc))

    stores = ("TETHER_PG_URL", "TETHER_REDIS_URL", "TETHER_CH_URL")
    diff = [v for v in stores if len({e.get(v) for e in envs.values()}) != 1
            or not next(iter(envs.values())).get(v)]
    hosts = {v: urlsplit(next(iter(envs.values())).get(v) or "").hostname for v in stores}
    nohost = [f"{v} -> {h}" for v, h in hosts.items() if h not in services]
    tap.check(not diff and not nohost, "compose: every node has the same store URLs, naming "
              "services of the file",
              ("differ or unset: " + ", ".join(diff) + " " if diff else "")
              + ("unknown host: " + ", ".join(nohost) if nohost else ""))

    tether_svcs = {n: compose_env(s) for n, s in services.items()
                   if any(k.startswith("TETHER_") for k in compose_env(s))}
    names.check(tap, "compose: the Tether services",
                {k for e in tether_svcs.values() for k in e})

    badhost = [n for n, e in envs.items() if e.get("TETHER_HTTP_HOST") != "0.0.0.0"]
    tap.check(not badhost, "compose: TETHER_HTTP_HOST is 0.0.0.0 on every node",
              "not on " + ", ".join(badhost))

    published, urlbad = [], []
    for n, s in nodes.items():
        port = int(envs[n].get("TETHER_HTTP_PORT") or 8787)
        for p in s.get("ports") or []:
            parts = str(p).split(":")
            if len(parts) >= 2 and parts[-1].split("/")[0] == str(port):
                published.append(int(parts[-2]))
                pub = envs[n].get("TETHER_GW_PUBLIC_URL")
                if pub and urlsplit(pub).port != int(parts[-2]):
                    urlbad.append(f"{n}: {pub} vs host port {parts[-2]}")
    tap.check(sorted(published) == [8787, 8788, 8789],
              "compose: the nodes' gateway ports are published as 8787, 8788, 8789",
              f"got {sorted(published)}")
    tap.check(not urlbad, "compose: a node's TETHER_GW_PUBLIC_URL names its published port "
              "(agents are sent there to write)", "; ".join(urlbad))

    imgs = {(str(s.get("image")), repr(s.get("build"))) for s in nodes.values()}
    tap.check(len(imgs) == 1 and next(iter(imgs))[0] not in ("None", ""),
              "compose: every node runs the same image and build", f"got {imgs}")

    short = []
    for n, s in nodes.items():
        grace = duration_ms(envs[n].get("TETHER_SHUTDOWN_GRACE") or "10s") or 0
        kill_after = duration_ms(envs[n].get("TETHER_SV_KILL_AFTER") or "5s") or 0
        sgp = str(s.get("stop_grace_period") or "10s")
        m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", sgp)
        sgp_ms = (int(m.group(1) or 0) * 60 + int(m.group(2) or 0)) * 1000 if m else 0
        if sgp_ms <= grace + kill_after:
            short.append(f"{n} {sgp}")
    tap.check(not short, "compose: every node's stop_grace_period outlasts TETHER_SHUTDOWN_GRACE"
              " + TETHER_SV_KILL_AFTER", ", ".join(short))

    pg = services.get(hosts.get("TETHER_PG_URL")) or {}
    tap.check("wal_level=logical" in compose_argv(pg),
              "compose: PostgreSQL runs with wal_level=logical")
    rd = compose_argv(services.get(hosts.get("TETHER_REDIS_URL")) or {})
    pairs = dict(zip(rd, rd[1:]))
    tap.check(pairs.get("--appendonly") == "yes" and pairs.get("--maxmemory-policy") ==
              "noeviction", "compose: Redis runs with appendonly yes and noeviction")

    steps = [n for n, s in services.items()
             if runs_schema({"command": compose_argv(s, "entrypoint") + compose_argv(s)})]
    ok = len(steps) == 1 and steps[0] not in nodes
    if ok and ctx.get("schema"):
        s = services[steps[0]]
        ok = ctx["schema"] in compose_argv(s, "entrypoint") + compose_argv(s)
    tap.check(ok, "compose: exactly one service applies the schema (deploy/schema.sh in the "
              "image), not a node", f"services running it: {steps}")
    nowait = []
    for n, s in nodes.items():
        dep = s.get("depends_on") or {}
        conds = {k: (c or {}).get("condition") for k, c in dep.items()} \
            if isinstance(dep, dict) else {}
        if not steps or conds.get(steps[0]) != "service_completed_successfully":
            nowait.append(n)
    tap.check(not nowait, "compose: the nodes start after the schema step succeeded",
              "not " + ", ".join(nowait))


def main():
    here = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap = argparse.ArgumentParser(add_help=True)
    ap.add_argument("--root", default=here)
    ap.add_argument("--repo", default=here)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--no-plan", action="store_true")
    try:
        args = ap.parse_args()
    except SystemExit as e:
        sys.exit(0 if e.code == 0 else 100)
    root, repo = os.path.abspath(args.root), os.path.abspath(args.repo)
    tap = Tap(args.first)
    names = Names(repo)
    tap.check(len(names.docs) >= 20 and "TETHER_PG_URL" in names.docs and len(names.code) >= 20,
              f"docs: docs/config.md lists {len(names.docs)} variables and "
              f"{len(names.patterns)} name patterns; the code's tables {len(names.code)}")
    ctx = {"repo": repo}
    check_docker(tap, root, names, ctx)
    check_k8s(tap, root, names, ctx)
    check_compose(tap, root, names, ctx)
    if not args.no_plan:
        tap.plan()
    sys.exit(1 if tap.failed else 0)


if __name__ == "__main__":
    main()
