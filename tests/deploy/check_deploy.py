#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Check deploy/kubernetes against the procimage built here.

usage: check_deploy.py CHECK SOURCE_DIR BUILD_DIR [--sanitized]

CHECK is one of:
  command   daemonset.yaml: the pod's privileges and host mounts, its probes, resources and
            tolerations; then the container's command and arguments, with the pipeline the
            ConfigMap delivers written where the arguments name it, run by the procimage built
            here with --check (exit 0) and --print-pipeline (inactive, no target, the exporter on
            the container's port).
  refused   the same command line with one argument or one pipeline setting changed is refused
            by --check (exit 2, one line); manifests with one privilege or mount taken away are
            named by the checks of `command`.
  image     Dockerfile: built on debian:12 with scripts/install-deps.sh and cmake --install, run
            on debian:12-slim; every library `ldd` finds for the binaries and plugins built here,
            every library they name for dlopen (a soname in their bytes: Capstone) (and nsenter, the pod's command) belongs to a Debian package the runtime stage
            installs (dpkg -S).
  scrape    prometheus-scrape.yaml and podmonitor.yaml select the DaemonSet's running pods, on
            the exporter's port, labelled with their node (Prometheus' own relabelling, through
            promtool, on the targets Kubernetes discovery makes of the pod).

--sanitized: the build is instrumented (PROCIMAGE_SANITIZE): the sanitizer runtimes it links
with are not part of the image.

Prints one line per problem found; exits 0 when there is none, 1 otherwise, 2 on a bad command
line or unreadable files, 77 when the check cannot run here (the reason is printed).
"""
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    print("check_deploy.py: the Python module yaml is missing "
          "(Debian package python3-yaml; scripts/install-deps.sh installs it)", file=sys.stderr)
    sys.exit(2)

SKIP = 77
# the host paths the DaemonSet must mount at the same place in the container, and whether the
# mount must be read-only
HOST_MOUNTS = {
    "/sys/kernel/debug": False,
    "/sys/fs/bpf": False,
    "/sys/fs/cgroup": False,
    "/sys/kernel/btf": True,
}


class Usage(Exception):
    pass


# ---------------------------------------------------------------- manifests

def load_yaml_docs(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except OSError as e:
        raise Usage("%s: %s" % (path, e.strerror))
    except yaml.YAMLError as e:
        raise Usage("%s: invalid YAML: %s" % (path, str(e).replace("\n", " ")))


def find(docs, kind, what):
    found = [d for d in docs if isinstance(d, dict) and d.get("kind") == kind]
    if len(found) != 1:
        raise Usage("%s: expected one %s, found %d" % (what, kind, len(found)))
    return found[0]


class Manifests:
    """The objects of daemonset.yaml and the parts of them the checks read."""

    def __init__(self, docs, what):
        self.docs = docs
        self.what = what
        self.ds = find(docs, "DaemonSet", what)
        self.configmaps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
        self.namespace = self.ds.get("metadata", {}).get("namespace", "default")
        self.pod = self.ds.get("spec", {}).get("template", {}).get("spec", {})
        self.pod_labels = self.ds.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
        containers = [c for c in self.pod.get("containers", []) if c.get("name") == "procimage"]
        if len(containers) != 1:
            raise Usage("%s: the DaemonSet has no container named procimage" % what)
        self.container = containers[0]
        self.volumes = {v["name"]: v for v in self.pod.get("volumes", [])}
        self.mounts = self.container.get("volumeMounts", [])
        ports = [p for p in self.container.get("ports", []) if p.get("name") == "metrics"]
        self.port = ports[0] if len(ports) == 1 else None


def parse_quantity(q):
    """A Kubernetes quantity as a number (cpu in cores, memory in bytes), or None."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(q))
    if not m:
        return None
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}[m.group(2)]
    return float(m.group(1)) * scale


def security_problems(man):
    """What daemonset.yaml lacks of what procimage needs on a node; one line each."""
    p = []
    pod, c = man.pod, man.container
    if pod.get("hostPID") is not True:
        p.append("the pod does not set hostPID: true (procimage must see the node's processes)")
    if pod.get("hostNetwork") is True:
        p.append("the pod sets hostNetwork: true: the exporter on 0.0.0.0 would listen on every address of the node")
    if c.get("securityContext", {}).get("privileged") is not True:
        p.append("the procimage container is not privileged: true")
    for path, read_only in HOST_MOUNTS.items():
        vols = [n for n, v in man.volumes.items() if v.get("hostPath", {}).get("path") == path]
        mounts = [m for m in man.mounts if m.get("name") in vols and m.get("mountPath") == path]
        if not mounts:
            p.append("no hostPath volume of %s mounted at %s" % (path, path))
        elif read_only and not all(m.get("readOnly") is True for m in mounts):
            p.append("%s is not mounted readOnly: true" % path)
    if not any(t.get("operator") == "Exists" and "key" not in t and "effect" not in t
               for t in pod.get("tolerations", [])):
        p.append("no toleration of every taint (operator: Exists, no key, no effect): some nodes would go without procimage")
    res = c.get("resources", {})
    for kind in ("cpu", "memory"):
        req = parse_quantity(res.get("requests", {}).get(kind, ""))
        lim = parse_quantity(res.get("limits", {}).get(kind, ""))
        if req is None or lim is None:
            p.append("resources: %s needs a request and a limit" % kind)
        elif req > lim:
            p.append("resources: the %s request is above its limit" % kind)
    if man.port is None:
        p.append("the procimage container declares no port named metrics")
    for probe in ("readinessProbe", "livenessProbe"):
        port = c.get(probe, {}).get("httpGet", {}).get("port")
        if man.port is None or port not in ("metrics", man.port.get("containerPort")):
            p.append("%s: expected an httpGet on the metrics port, got %s" % (probe, json.dumps(c.get(probe))))
    sa = pod.get("serviceAccountName")
    if sa and not any(d.get("kind") == "ServiceAccount" and d["metadata"].get("name") == sa
                      and d["metadata"].get("namespace") == man.namespace for d in man.docs):
        p.append("serviceAccountName %s: no such ServiceAccount in namespace %s" % (sa, man.namespace))
    for d in man.docs:
        ns = d.get("metadata", {}).get("namespace")
        if d.get("kind") != "Namespace" and ns != man.namespace:
            p.append("%s %s is in namespace %s, the DaemonSet in %s" % (d.get("kind"), d["metadata"].get("name"), ns, man.namespace))
    return p


def procimage_command(man):
    """The container's command and arguments: (wrapper, procimage's arguments, problems)."""
    cmd = [str(a) for a in man.container.get("command", []) + man.container.get("args", [])]
    at = [i for i, a in enumerate(cmd) if os.path.basename(a) == "procimage"]
    if not at:
        return [], [], ["the container's command runs no procimage: %s" % cmd]
    wrapper, args = cmd[:at[0]], cmd[at[0] + 1:]
    problems = []
    if wrapper:
        # nsenter into process 1's cgroup namespace, and nothing else
        w = wrapper[1:-1] if wrapper[-1:] == ["--"] else wrapper[1:]
        target = w in (["--target=1", "--cgroup"], ["--target", "1", "--cgroup"], ["-t", "1", "-C"])
        if os.path.basename(wrapper[0]) != "nsenter" or not target:
            problems.append("procimage is started by %s: expected nsenter --target=1 --cgroup -- procimage "
                            "(the node's cgroup namespace)" % " ".join(wrapper))
    return wrapper, args, problems


def localize(man, args, tmp):
    """procimage's arguments with every path inside a volume of the pod replaced by a file in tmp
    holding the ConfigMap's data for it (a path in another kind of volume is a problem: nothing
    is there when the pod starts). Returns (args, problems)."""
    out, problems = [], []
    for a in args:
        if not a.startswith("/"):
            out.append(a)
            continue
        mounts = [m for m in man.mounts if a.startswith(m["mountPath"].rstrip("/") + "/")]
        if not mounts:
            out.append(a)  # a path of the image: the same here, or procimage says what is wrong
            continue
        m = max(mounts, key=lambda m: len(m["mountPath"]))
        vol = man.volumes.get(m["name"], {})
        cm_name = vol.get("configMap", {}).get("name")
        if cm_name is None:
            problems.append("argument %s: volume %s is not a ConfigMap" % (a, m["name"]))
            out.append(a)
            continue
        key = a[len(m["mountPath"].rstrip("/")) + 1:]
        data = man.configmaps.get(cm_name, {}).get("data", {})
        if cm_name not in man.configmaps:
            problems.append("argument %s: ConfigMap %s is not in %s" % (a, cm_name, man.what))
        elif key not in data:
            problems.append("argument %s: ConfigMap %s has no key %s" % (a, cm_name, key))
        else:
            path = os.path.join(tmp, cm_name, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(data[key])
            a = path
        out.append(a)
    return out, problems


def run(argv):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def command_problems(man, procimage, tmp):
    """Problems of the command line: it must pass --check, and be an inactive host with the
    exporter on the container's metrics port."""
    _, args, problems = procimage_command(man)
    local, more = localize(man, args, tmp)
    problems += more
    if problems:
        return problems, None
    rc, _, err = run([procimage] + local + ["--check"])
    if rc != 0:
        return ["procimage %s --check: exit %d: %s" % (" ".join(args), rc, err.strip())], None
    rc, out, err = run([procimage] + local + ["--print-pipeline"])
    if rc != 0:
        return ["procimage %s --print-pipeline: exit %d: %s" % (" ".join(args), rc, err.strip())], None
    pipe = json.loads(out)
    targeted = "target" in pipe or "command" in pipe or any("target" in pc for pc in pipe.get("probes", {}).values())
    if pipe.get("start", "active" if targeted else "inactive") != "inactive" or targeted:
        problems.append("the pipeline is not pre-attached: start %s, target %s, command %s (expected inactive, none, none)"
                        % (pipe.get("start"), pipe.get("target"), pipe.get("command")))
    for pid, pc in pipe.get("probes", {}).items():
        if "target" in pc:
            problems.append("probe %s has a target of its own: %s" % (pid, pc["target"]))
    proms = [s for sid, s in pipe.get("sinks", {}).items() if (s.get("plugin") or sid.split("/")[0]) == "prometheus"]
    if len(proms) != 1:
        problems.append("expected one prometheus sink, found %d" % len(proms))
    else:
        host, _, port = proms[0].get("listen", "127.0.0.1:9464").rpartition(":")
        want = man.port.get("containerPort") if man.port else None
        if host not in ("0.0.0.0", "[::]") or str(port) != str(want):
            problems.append("the prometheus sink listens on %s: expected 0.0.0.0:%s (every address of the pod, the container's metrics port)"
                            % (proms[0].get("listen"), want))
    return problems, pipe


def check_command(src, build, _sanitized):
    man = Manifests(load_yaml_docs(os.path.join(src, "deploy/kubernetes/daemonset.yaml")), "daemonset.yaml")
    problems = security_problems(man)
    with tempfile.TemporaryDirectory() as tmp:
        more, pipe = command_problems(man, os.path.join(build, "procimage"), tmp)
    problems += more
    if not problems:
        _, args, _ = procimage_command(man)
        print("procimage %s --check: exit 0; pre-attached (start inactive, no target), probes %s, exporter on %s"
              % (" ".join(args), ", ".join(sorted(pipe["probes"])),
                 next(s["listen"] for sid, s in pipe["sinks"].items() if sid.split("/")[0] == "prometheus")))
    return problems


def check_refused(src, build, _sanitized):
    """Each change must be caught: the checks above are able to fail."""
    procimage = os.path.join(build, "procimage")
    docs = load_yaml_docs(os.path.join(src, "deploy/kubernetes/daemonset.yaml"))
    problems = []

    def changed(edit):
        d = copy.deepcopy(docs)
        m = Manifests(d, "daemonset.yaml")
        edit(m)
        return m

    def set_args(args):
        return lambda m: m.container.__setitem__("args", args)

    def set_pipeline(edit):
        def f(m):
            cm = next(iter(m.configmaps.values()))
            p = json.loads(cm["data"]["pipeline.json"])
            edit(p)
            cm["data"]["pipeline.json"] = json.dumps(p)
        return f

    orig_args = Manifests(docs, "daemonset.yaml").container.get("args", [])
    command_changes = [
        ("an option misspelt", set_args([a.replace("--pipeline", "--pipelne") for a in orig_args]), "--pipelne"),
        ("--start sometimes added", set_args(orig_args + ["--start", "sometimes"]), "--start"),
        ("the exporter's port left out", set_pipeline(lambda p: p["sinks"]["prometheus"].__setitem__("listen", "0.0.0.0")), "listen"),
        ("a probe setting of the wrong type", set_pipeline(lambda p: p["probes"]["syscall"].__setitem__("sequence", "no")), "sequence"),
        ("a probe that does not exist", set_pipeline(lambda p: p["probes"].__setitem__("locks", p["probes"].pop("lock"))), "locks"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (what, edit, named) in enumerate(command_changes):
            m = changed(edit)
            _, args, _ = procimage_command(m)
            local, more = localize(m, args, os.path.join(tmp, str(i)))
            if more:
                problems.append("%s: %s" % (what, "; ".join(more)))
                continue
            rc, _, err = run([procimage] + local + ["--check"])
            lines = err.strip().splitlines()
            if rc != 2 or len(lines) != 1 or named not in lines[0]:
                problems.append("%s: --check gave exit %d and %r; expected exit 2 and one line naming %s" % (what, rc, err, named))
            else:
                print("%s: exit 2: %s" % (what, lines[0]))
        # a pipeline the exporter cannot serve from the pod: passes --check, caught by the check
        m = changed(set_pipeline(lambda p: p["sinks"]["prometheus"].__setitem__("listen", "127.0.0.1:9464")))
        found, _ = command_problems(m, procimage, os.path.join(tmp, "loopback"))
        if not any("listens on 127.0.0.1:9464" in f for f in found):
            problems.append("an exporter on loopback only was not reported: %s" % found)
        else:
            print("the exporter on loopback only: reported")
        # the ConfigMap's key no longer where the arguments look for the pipeline
        m = changed(lambda m: [cm["data"].__setitem__("exporter.json", cm["data"].pop("pipeline.json")) for cm in m.configmaps.values()])
        found, _ = command_problems(m, procimage, os.path.join(tmp, "key"))
        if not any("has no key pipeline.json" in f for f in found):
            problems.append("a ConfigMap without the key pipeline.json was not reported: %s" % found)
        else:
            print("the ConfigMap's key renamed: %s" % next(f for f in found if "has no key" in f))
        # a command line not entering the node's cgroup namespace
        m = changed(lambda m: m.container.__setitem__("command", ["nsenter", "--target=1", "--mount", "--", "procimage"]))
        _, _, found = procimage_command(m)
        if not found:
            problems.append("nsenter into the mount namespace instead of the cgroup one was not reported")
        else:
            print("nsenter --mount instead of --cgroup: reported")

    manifest_changes = [
        ("hostPID removed", lambda m: m.pod.pop("hostPID"), "hostPID"),
        ("privileged false", lambda m: m.container["securityContext"].__setitem__("privileged", False), "privileged"),
        ("hostNetwork true", lambda m: m.pod.__setitem__("hostNetwork", True), "hostNetwork"),
        ("/sys/kernel/btf writable", lambda m: [x.pop("readOnly", None) for x in m.mounts if x["mountPath"] == "/sys/kernel/btf"], "/sys/kernel/btf"),
        ("no /sys/fs/bpf", lambda m: m.container.__setitem__("volumeMounts", [x for x in m.mounts if x["mountPath"] != "/sys/fs/bpf"]), "/sys/fs/bpf"),
        ("no /sys/fs/cgroup", lambda m: [v["hostPath"].__setitem__("path", "/sys/fs/cgroup/unified") for v in m.volumes.values() if v.get("hostPath", {}).get("path") == "/sys/fs/cgroup"], "/sys/fs/cgroup"),
        ("no /sys/kernel/debug", lambda m: m.container.__setitem__("volumeMounts", [x for x in m.mounts if x["mountPath"] != "/sys/kernel/debug"]), "/sys/kernel/debug"),
        ("tolerations removed", lambda m: m.pod.pop("tolerations"), "toleration"),
        ("no memory limit", lambda m: m.container["resources"]["limits"].pop("memory"), "memory"),
        ("liveness on another port", lambda m: m.container["livenessProbe"]["httpGet"].__setitem__("port", 8080), "livenessProbe"),
    ]
    for what, edit, named in manifest_changes:
        d = copy.deepcopy(docs)
        m = Manifests(d, "daemonset.yaml")
        edit(m)
        m = Manifests(d, "daemonset.yaml")  # as read from the changed objects
        found = security_problems(m)
        if not any(named in f for f in found):
            problems.append("%s: not reported (the checks found %s)" % (what, found or "nothing"))
        else:
            print("%s: %s" % (what, next(f for f in found if named in f)))
    return problems


# ---------------------------------------------------------------- Dockerfile

def dockerfile_stages(path):
    """[(from, name, [(instruction, text)])] of a Dockerfile, continuation lines joined."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise Usage("%s: %s" % (path, e.strerror))
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue  # a comment inside a continued instruction
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    stages = []
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            w = rest.split()
            w = [x for x in w if not x.startswith("--")]
            name = w[2] if len(w) >= 3 and w[1].upper() == "AS" else None
            stages.append((w[0], name, []))
        elif stages:
            stages[-1][2].append((instr, rest.strip()))
    return stages


def apt_installed(stage):
    """Packages the stage's RUN instructions give apt-get install."""
    pkgs = set()
    for instr, text in stage[2]:
        if instr != "RUN":
            continue
        for part in re.split(r"&&|;|\|\|", text):
            w = part.split()
            if len(w) >= 2 and w[0] in ("apt-get", "apt") and "install" in w:
                pkgs |= {x for x in w[w.index("install") + 1:] if not x.startswith("-")}
    return pkgs


def ldd(path):
    """{soname: resolved path or None} of what path loads."""
    r = subprocess.run(["ldd", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise Usage("ldd %s: %s" % (path, r.stderr.strip() or r.stdout.strip()))
    libs = {}
    for line in r.stdout.splitlines():
        line = line.strip()
        m = re.match(r"(\S+) => (not found|(\S+) \(0x[0-9a-f]+\))", line)
        if m:
            libs[m.group(1)] = m.group(3)
        else:
            m = re.match(r"(/\S+) \(0x[0-9a-f]+\)", line)  # the dynamic loader
            if m:
                libs[os.path.basename(m.group(1))] = m.group(1)
    return libs


def dlopened(path, linked):
    """{soname: resolved path or None} of the libraries path names but does not link (opened with
    dlopen, e.g. the lock probe's Capstone), resolved through the loader's cache."""
    with open(path, "rb") as f:
        names = {m.group(0).decode() for m in re.finditer(rb"lib[A-Za-z0-9_+-]+\.so(?:\.[0-9]+)+", f.read())}
    names -= set(linked)
    if not names:
        return {}
    r = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True)
    cache = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s*(\S+) \((.*)\) => (\S+)", line)
        if m and "x86-64" in m.group(2):
            cache.setdefault(m.group(1), m.group(3))
    return {n: cache.get(n) for n in names}


def spellings(path):
    """A file's names under merged /usr: as given, resolved, with and without /usr."""
    cands = [path, os.path.realpath(path)]
    for c in list(cands):
        cands.append(c[4:] if c.startswith("/usr/") else "/usr" + c)
    return cands


def dpkg_packages(paths):
    """{path: the Debian package it belongs to, or None}, from one dpkg -S call."""
    cands = sorted({c for p in paths for c in spellings(p)})
    r = subprocess.run(["dpkg", "-S"] + cands, capture_output=True, text=True)
    owner = {}
    for line in r.stdout.splitlines():
        owners, _, file = line.rpartition(": ")
        if owners and "diversion" not in owners:
            owner[file] = owners.split(", ")[0].split(":")[0]
    return {p: next((owner[c] for c in spellings(p) if c in owner), None) for p in paths}


def image_problems(stages, needs):
    """needs: {what: (file, package)}. Problems of the Dockerfile's stages."""
    p = []
    if len(stages) < 2:
        return ["the Dockerfile has %d stage(s): expected a build stage and a runtime stage" % len(stages)]
    build, runtime = stages[0], stages[-1]
    if build[0] != "debian:12":
        p.append("the build stage is based on %s, not debian:12" % build[0])
    runs = [t for i, t in build[2] if i == "RUN"]
    if not any("scripts/install-deps.sh" in t for t in runs):
        p.append("the build stage does not run scripts/install-deps.sh")
    if not any("cmake --install" in t for t in runs):
        p.append("the build stage does not run cmake --install")
    if runtime[0] != "debian:12-slim":
        p.append("the runtime stage is based on %s, not debian:12-slim" % runtime[0])
    copies = [t for i, t in runtime[2] if i == "COPY" and t.startswith("--from=")]
    if build[1] is None or not any(t.split()[0] == "--from=" + build[1] for t in copies):
        p.append("the runtime stage copies nothing from the build stage")
    installed = apt_installed(runtime)
    for what, (path, pkg) in sorted(needs.items()):
        if pkg is None:
            p.append("%s (%s): no Debian package has it (dpkg -S)" % (what, path))
        elif pkg not in installed:
            p.append("%s (%s) needs package %s, which the runtime stage does not install" % (what, path, pkg))
    return p


def check_image(src, build, sanitized):
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            osr = dict(l.rstrip("\n").split("=", 1) for l in f if "=" in l)
    except OSError:
        osr = {}
    if osr.get("ID") != "debian" or osr.get("VERSION_ID", "").strip('"') != "12":
        print("skipped: the image is Debian 12, and this build is not: the libraries' package names differ")
        return SKIP
    if not shutil.which("dpkg") or not shutil.which("ldd"):
        print("skipped: dpkg or ldd is missing")
        return SKIP
    stages = dockerfile_stages(os.path.join(src, "deploy/kubernetes/Dockerfile"))
    plugins = sorted(os.path.join(build, "plugins", f) for f in os.listdir(os.path.join(build, "plugins")) if f.endswith(".so"))
    needs, missing = {}, []
    for binary in [os.path.join(build, "procimage"), os.path.join(build, "procimage-ctl")] + plugins:
        linked = ldd(binary)
        for soname, path in list(linked.items()) + list(dlopened(binary, linked).items()):
            if soname.startswith("linux-vdso"):
                continue
            if sanitized and re.match(r"lib(asan|ubsan|lsan)\.so", soname):
                continue  # the instrumented build's runtimes are not the image's
            if path is None:
                missing.append("%s: %s not found" % (os.path.basename(binary), soname))
            elif soname not in needs:
                needs[soname] = path
    man = Manifests(load_yaml_docs(os.path.join(src, "deploy/kubernetes/daemonset.yaml")), "daemonset.yaml")
    wrapper, _, _ = procimage_command(man)
    if wrapper:
        exe = shutil.which(wrapper[0])
        if exe is None:
            missing.append("%s (the pod's command) is not installed here" % wrapper[0])
        else:
            needs[wrapper[0]] = exe
    owners = dpkg_packages(list(needs.values()))
    needs = {what: (path, owners[path]) for what, path in needs.items()}
    problems = missing + image_problems(stages, needs)
    unknown = []
    for pkg in sorted(apt_installed(stages[-1])):
        if subprocess.run(["dpkg-query", "-W", pkg], capture_output=True).returncode != 0:
            unknown.append(pkg)
    if unknown:
        problems.append("the runtime stage installs packages dpkg does not know here: %s" % " ".join(unknown))
    # the check must be able to fail: a runtime stage without libbpf1 is named
    gone = [(f, n, [(i, t.replace(" libbpf1 ", " ")) for i, t in body]) for f, n, body in stages]
    if not any("libbpf1" in x for x in image_problems(gone, needs)):
        problems.append("a runtime stage without libbpf1 was not reported")
    if not problems:
        pkgs = sorted({pkg for _, pkg in needs.values()})
        print("%d libraries of procimage, procimage-ctl and %d plugins, and %s, from %d packages the runtime stage installs: %s"
              % (len(needs) - len(wrapper[:1]), len(plugins), wrapper[0] if wrapper else "no wrapper", len(pkgs), " ".join(pkgs)))
        print("without libbpf1: %s" % next(x for x in image_problems(gone, needs) if "libbpf1" in x))
    return problems


# ---------------------------------------------------------------- scrape configuration

def k8s_label_name(s):
    return re.sub(r"[^a-zA-Z0-9_]", "_", s)


def pod_targets(man, node, phase, labels=None, ip="10.1.2.3"):
    """The targets Prometheus' Kubernetes discovery (role pod) makes of one of the DaemonSet's
    pods: one per declared container port."""
    tmpl = man.ds["spec"]["template"]["metadata"]
    labels = tmpl.get("labels", {}) if labels is None else labels
    meta = {
        "__meta_kubernetes_namespace": man.namespace,
        "__meta_kubernetes_pod_name": "procimage-%s" % node,
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_node_name": node,
        "__meta_kubernetes_pod_host_ip": "192.168.0.10",
        "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_pod_ready": "true" if phase == "Running" else "false",
        "__meta_kubernetes_pod_controller_kind": "DaemonSet",
        "__meta_kubernetes_pod_controller_name": man.ds["metadata"]["name"],
        "__meta_kubernetes_pod_container_name": man.container["name"],
        "__meta_kubernetes_pod_container_init": "false",
    }
    for k, v in labels.items():
        meta["__meta_kubernetes_pod_label_" + k8s_label_name(k)] = str(v)
        meta["__meta_kubernetes_pod_labelpresent_" + k8s_label_name(k)] = "true"
    for k, v in tmpl.get("annotations", {}).items():
        meta["__meta_kubernetes_pod_annotation_" + k8s_label_name(k)] = str(v)
        meta["__meta_kubernetes_pod_annotationpresent_" + k8s_label_name(k)] = "true"
    out = []
    for port in man.container.get("ports", []):
        m = dict(meta)
        m["__meta_kubernetes_pod_container_port_name"] = port.get("name", "")
        m["__meta_kubernetes_pod_container_port_number"] = str(port["containerPort"])
        m["__meta_kubernetes_pod_container_port_protocol"] = port.get("protocol", "TCP")
        out.append({"targets": ["%s:%d" % (ip, port["containerPort"])], "labels": m})
    return out


def selector_matches(sel, labels):
    """A Kubernetes equality label selector (a=b,c!=d) against a pod's labels."""
    for term in filter(None, (t.strip() for t in sel.split(","))):
        m = re.fullmatch(r"([^=!]+?)\s*(==|=|!=)\s*(.*)", term)
        if not m:
            raise Usage("label selector %r: only equality terms are checked here" % sel)
        k, op, v = m.groups()
        if (labels.get(k) == v) != (op != "!="):
            return False
    return True


def discover(promtool, config, job, tmp):
    """promtool's service discovery of one job: [(discovered labels, labels after relabelling)]."""
    path = os.path.join(tmp, "%s.yml" % re.sub(r"\W", "_", job))
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)
    rc, out, err = run([promtool, "check", "config", path])
    if rc != 0:
        raise Usage("promtool check config: %s" % (err.strip() or out.strip()))
    # the static targets are there within milliseconds; promtool spins until its timeout (30 s
    # by default) whatever it found
    rc, out, err = run([promtool, "check", "service-discovery", "--timeout=1s", path, job])
    if rc != 0:
        raise Usage("promtool check service-discovery: %s" % (err.strip() or out.strip()))
    return [(t["discoveredLabels"], t["labels"]) for t in json.loads(out)]


def scrape_problems(man, job, sd, promtool, tmp, what, port):
    """job: a scrape config whose kubernetes_sd_configs are given separately (sd); the DaemonSet's
    running pods must be kept, one target each, on the exporter's port, labelled with their node."""
    p = []
    if len(sd) != 1 or sd[0].get("role") != "pod":
        return ["%s: expected one kubernetes_sd_configs entry of role pod, got %s" % (what, sd)]
    names = sd[0].get("namespaces", {}).get("names")
    if names is not None and man.namespace not in names:
        p.append("%s: discovers pods in %s, the DaemonSet's are in %s" % (what, names, man.namespace))
    for s in sd[0].get("selectors", []):
        if s.get("role") == "pod" and s.get("label") and not selector_matches(s["label"], man.pod_labels):
            p.append("%s: the selector %s does not match the DaemonSet's pod labels %s" % (what, s["label"], man.pod_labels))
    # the DaemonSet's pods on two nodes, one evicted; another program's pod in the namespace
    other = dict(man.pod_labels)
    other["app.kubernetes.io/name"] = "something-else"
    groups = (pod_targets(man, "node-a", "Running", ip="10.1.2.3") + pod_targets(man, "node-b", "Running", ip="10.1.2.4")
              + pod_targets(man, "node-c", "Failed", ip="10.1.2.5") + pod_targets(man, "node-d", "Running", other, ip="10.1.2.6"))
    static = dict(job)
    static["static_configs"] = groups
    results = discover(promtool, {"scrape_configs": [static]}, job["job_name"], tmp)
    kept = {d["__meta_kubernetes_pod_node_name"]: l for d, l in results if l}
    if sorted(kept) != ["node-a", "node-b"]:
        p.append("%s: kept the pods of %s; expected the running procimage pods, on node-a and node-b" % (what, sorted(kept) or "no node"))
    for node, labels in sorted(kept.items()):
        if labels.get("node") != node:
            p.append("%s: the target of %s is labelled node=%s" % (what, node, labels.get("node")))
        if not labels.get("__address__", "").endswith(":%s" % port):
            p.append("%s: the target of %s is %s, not the exporter's port %s" % (what, node, labels.get("__address__"), port))
        if labels.get("__metrics_path__") != "/metrics":
            p.append("%s: the target of %s is scraped at %s" % (what, node, labels.get("__metrics_path__")))
    if not p:
        print("%s: kept %s; dropped the evicted pod and the other program's; labels of node-a's target: %s"
              % (what, ", ".join("%s (%s)" % (l["__address__"], n) for n, l in sorted(kept.items())),
                 json.dumps({k: v for k, v in sorted(kept["node-a"].items()) if not k.startswith("__")})))
    return p


def podmonitor_job(pm):
    """The scrape job the Prometheus Operator makes of a PodMonitor (its keep rules for the
    selector and the port, then the endpoint's relabelings); the discovery separately."""
    spec = pm["spec"]
    eps = spec.get("podMetricsEndpoints", [])
    if len(eps) != 1:
        raise Usage("podmonitor.yaml: expected one podMetricsEndpoints entry, got %d" % len(eps))
    ep = eps[0]
    rel = []
    for k, v in sorted(spec.get("selector", {}).get("matchLabels", {}).items()):
        rel.append({"source_labels": ["__meta_kubernetes_pod_label_" + k8s_label_name(k),
                                      "__meta_kubernetes_pod_labelpresent_" + k8s_label_name(k)],
                    "regex": "(%s);true" % re.escape(v), "action": "keep"})
    rel.append({"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": ep["port"], "action": "keep"})
    rel.append({"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)", "action": "drop"})
    keys = {"sourceLabels": "source_labels", "targetLabel": "target_label", "regex": "regex",
            "replacement": "replacement", "separator": "separator", "action": "action", "modulus": "modulus"}
    for r in ep.get("relabelings", []):
        unknown = set(r) - set(keys)
        if unknown:
            raise Usage("podmonitor.yaml: relabeling keys not checked here: %s" % ", ".join(sorted(unknown)))
        rel.append({keys[k]: (v.lower() if k == "action" else v) for k, v in r.items()})
    job = {"job_name": "podMonitor/%s/%s/0" % (pm["metadata"].get("namespace"), pm["metadata"]["name"]),
           "metrics_path": ep.get("path", "/metrics"), "relabel_configs": rel}
    sd = [{"role": "pod", "namespaces": {"names": spec.get("namespaceSelector", {}).get("matchNames", [])}}]
    return job, sd


def check_scrape(src, build, _sanitized):
    promtool = shutil.which("promtool")
    if promtool is None:
        print("skipped: promtool is missing (Debian package prometheus; scripts/install-deps.sh installs it)")
        return SKIP
    man = Manifests(load_yaml_docs(os.path.join(src, "deploy/kubernetes/daemonset.yaml")), "daemonset.yaml")
    port = man.port["containerPort"] if man.port else None
    cfg = load_yaml_docs(os.path.join(src, "deploy/kubernetes/prometheus-scrape.yaml"))
    jobs = [j for j in (cfg[0].get("scrape_configs", []) if cfg else []) if j.get("job_name") == "procimage"]
    if len(jobs) != 1:
        return ["prometheus-scrape.yaml: no scrape job named procimage"]
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        # Debian's Prometheus is built without Kubernetes discovery: its relabelling runs on
        # static targets that carry the labels Kubernetes discovery gives a pod.
        job = dict(jobs[0])
        sd = job.pop("kubernetes_sd_configs", [])
        problems += scrape_problems(man, job, sd, promtool, tmp, "prometheus-scrape.yaml", port)
        pm = find(load_yaml_docs(os.path.join(src, "deploy/kubernetes/podmonitor.yaml")), "PodMonitor", "podmonitor.yaml")
        job, sd = podmonitor_job(pm)
        problems += scrape_problems(man, job, sd, promtool, tmp, "podmonitor.yaml", port)
        # the check must be able to fail: a job keeping another label value keeps no pod
        job = copy.deepcopy(jobs[0])
        sd = job.pop("kubernetes_sd_configs", [])
        for r in job["relabel_configs"]:
            if r.get("action") == "keep" and r.get("regex") == "procimage":
                r["regex"] = "procimage-exporter"
        with open(os.devnull, "w") as quiet:
            saved, sys.stdout = sys.stdout, quiet
            try:
                found = scrape_problems(man, job, sd, promtool, tmp, "changed", port)
            finally:
                sys.stdout = saved
        if not any("kept the pods of no node" in f for f in found):
            problems.append("a job keeping app.kubernetes.io/name=procimage-exporter was not reported: %s" % found)
        else:
            print("a job keeping app.kubernetes.io/name=procimage-exporter instead: reported (%s)" % found[0])
    return problems


CHECKS = {"command": check_command, "refused": check_refused, "image": check_image, "scrape": check_scrape}


def main(argv):
    args = [a for a in argv if a != "--sanitized"]
    if len(args) != 3 or args[0] not in CHECKS:
        print("usage: check_deploy.py {%s} SOURCE_DIR BUILD_DIR [--sanitized]" % "|".join(CHECKS), file=sys.stderr)
        return 2
    try:
        problems = CHECKS[args[0]](args[1], args[2], "--sanitized" in argv)
    except Usage as e:
        print("check_deploy.py: %s" % e, file=sys.stderr)
        return 2
    if problems == SKIP:
        return SKIP
    for p in problems:
        print("FAILED: %s" % p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
