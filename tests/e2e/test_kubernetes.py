"""contrib/kubernetes: node-problem-detector's custom-plugin contract, run exactly as NPD runs each rule
(argv from the shipped JSON, its timeout, whitespace trimmed, output cut at max_output_length bytes, exit 0 ->
condition False, 1 -> True, anything else or a timeout -> Unknown) for every verdict a node can have; and the
shipped YAML and Containerfile parse and name only what exists."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import yaml

import harness as h

K8S = os.path.join(h.SOURCE_DIR, "contrib", "kubernetes")
NPD = os.path.join(K8S, "node-problem-detector")
NPD_CONFIGS = ("gpuwarm-persistence.json", "gpuwarm-driver.json")


def seconds(duration):
    m = re.fullmatch(r"(\d+)s", duration)
    assert m, duration
    return int(m.group(1))


def load(name):
    with open(os.path.join(NPD, name)) as f:
        return json.load(f)


def npd_run(config, rule, root, scenario_path):
    """One invocation as NPD's custom plugin makes it; returns (condition status, message)."""
    args = list(rule["args"])
    # The shipped rule reads the host at /host; here the fake node's root stands in for it.
    args[args.index("--root") + 1] = root.path
    assert "--trust-root" in args, "as root, /host's libnvidia-ml is loaded only when vouched for"
    args += ["--no-systemd", "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")]
    env = {"FAKE_NVML_SCENARIO": scenario_path, "PATH": "/usr/bin:/bin", "ASAN_OPTIONS": "detect_leaks=0"}
    try:
        r = subprocess.run([h.BIN, *args], capture_output=True, env=env, timeout=seconds(rule["timeout"]))
    except subprocess.TimeoutExpired:
        return "Unknown", "timeout"
    message = r.stdout.strip()[:config["pluginConfig"]["max_output_length"]].decode(errors="replace")
    status = {0: "False", 1: "True"}.get(r.returncode, "Unknown")
    return status, message


class NodeProblemDetector(unittest.TestCase):
    def test_configs_follow_the_schema(self):
        for name in NPD_CONFIGS:
            c = load(name)
            self.assertEqual(c["plugin"], "custom", name)
            pc = c["pluginConfig"]
            self.assertTrue(pc["skip_initial_status"], name)  # never report an unprobed condition as healthy
            self.assertTrue(pc["enable_message_change_based_condition_update"], name)
            self.assertLessEqual(pc["max_output_length"], 80)
            self.assertGreater(seconds(pc["invoke_interval"]), 0)
            self.assertEqual(len(c["conditions"]), 1, "one condition per monitor")
            types = {cond["type"] for cond in c["conditions"]}
            for rule in c["rules"]:
                self.assertEqual(rule["type"], "permanent")
                self.assertIn(rule["condition"], types)
                self.assertLessEqual(seconds(rule["timeout"]), seconds(pc["timeout"]))
                # gpuwarm gives up on NVML before NPD kills it, so a hung GPU reads Unknown with a reason.
                nvml_timeout = int(rule["args"][rule["args"].index("--nvml-timeout") + 1])
                self.assertLess(nvml_timeout, seconds(rule["timeout"]))
                self.assertEqual(rule["path"], "/opt/gpuwarm/bin/gpuwarm")

    def test_each_condition_for_every_verdict(self):
        h.require_binary(self)
        tmp = tempfile.mkdtemp(prefix="gpuwarm-npd-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)

        def node(kind):
            root = h.FakeRoot()
            self.addCleanup(root.cleanup)
            gpus = [h.gpu(0), h.gpu(1)]
            top = {}
            if kind.startswith("cpu-node"):
                # No module, so NVML (the fake) says so too; what decides is the PCI bus.
                gpus, top = [], {"init": {"return": 9}}
                if kind == "cpu-node":
                    root.write("proc/bus/pci/devices", "0018\t80861572\t0" + "\t0" * 14 + "\ti40e\n")
                elif kind == "cpu-node-gpu-without-driver":
                    root.pci_gpus_without_driver()
                # "cpu-node-pci-unread": no /proc/bus/pci/devices at all
            else:
                root.driver(gpus=2).daemon_binary()
            if kind == "persistence-off":
                gpus[1]["persistence"] = 0
            elif kind == "reboot-pending":
                top = {"nvml_version": "13.580.200.01", "driver_version": "580.200.01"}
            elif kind == "cannot-tell":
                gpus[1]["returns"] = {"nvmlDeviceGetPersistenceMode": 4}
            elif kind == "nvml-hung":
                top = {"init": {"delay_ms": 60000}}
            elif kind.startswith("persistence-off-up-"):  # booted that many seconds ago
                root.write("proc/uptime", f"{kind.rsplit('-', 1)[1]}.37 120.05\n")
                gpus[1]["persistence"] = 0
            elif kind == "laptop":
                root.write("proc/driver/nvidia/gpus/0000:06:00.0/power", "Runtime D3 status:          Enabled (fine-grained)\n")
                root.write("sys/class/dmi/id/chassis_type", "10\n")
                gpus = [h.gpu(0, persistence=0), h.gpu(1, persistence=0)]
            path = os.path.join(tmp, kind + ".json")
            with open(path, "w") as f:
                json.dump(h.scenario(gpus, **top), f)
            return root, path

        expected = {
            # kind: {config: (status, message)}
            "healthy": {"gpuwarm-persistence.json": ("False", "OK PM001 not firing"),
                        "gpuwarm-driver.json": ("False", "OK DRV003 not firing")},
            "persistence-off": {"gpuwarm-persistence.json": ("True", "PM001 persistence off: GPU 1"),
                                "gpuwarm-driver.json": ("False", "OK DRV003 not firing")},
            # Right after boot nvidia-persistenced may not have taken the GPUs: not yet True (NPD has no wait of
            # its own), nor False; the driver condition does not wait.
            "persistence-off-up-45": {"gpuwarm-persistence.json": ("Unknown", "PM001 settling (up 45 s): persistence off: GPU 1"),
                                      "gpuwarm-driver.json": ("False", "OK DRV003 not firing")},
            "persistence-off-up-301": {"gpuwarm-persistence.json": ("True", "PM001 persistence off: GPU 1")},
            "reboot-pending": {"gpuwarm-persistence.json": ("False", "OK PM001 not firing"),
                               "gpuwarm-driver.json": ("True", "DRV003 driver version mismatch")},
            "cannot-tell": {"gpuwarm-persistence.json": ("Unknown", "UNK004 gpu fact unread: GPU 1"),
                            "gpuwarm-driver.json": ("Unknown", "UNK004 gpu fact unread: GPU 1")},
            "laptop": {"gpuwarm-persistence.json": ("False", "OK PM001 not firing"),
                       "gpuwarm-driver.json": ("False", "OK DRV003 not firing")},
            # NPD's DaemonSet runs on every node: one with no NVIDIA GPU has nothing to report.
            "cpu-node": {"gpuwarm-persistence.json": ("False", "OK not a GPU node: no nvidia module and no NVIDIA GPU needing one"),
                         "gpuwarm-driver.json": ("False", "OK not a GPU node: no nvidia module and no NVIDIA GPU needing one")},
            # ... but a GPU on the bus without its driver, or a bus gpuwarm could not read, is not "no GPU".
            "cpu-node-gpu-without-driver": {"gpuwarm-persistence.json": ("Unknown", "DRV001 driver not loaded"),
                                            "gpuwarm-driver.json": ("Unknown", "DRV001 driver not loaded")},
            "cpu-node-pci-unread": {"gpuwarm-persistence.json": ("Unknown", "DRV001 driver not loaded"),
                                    "gpuwarm-driver.json": ("Unknown", "DRV001 driver not loaded")},
        }
        for kind, per_config in expected.items():
            root, path = node(kind)
            for name, want in per_config.items():
                config = load(name)
                got = npd_run(config, config["rules"][0], root, path)
                self.assertEqual(got, want, f"{kind} / {name}")
                self.assertLessEqual(len(got[1].encode()), config["pluginConfig"]["max_output_length"])

    def test_rules_that_cannot_make_a_problem_are_refused(self):
        h.require_binary(self)
        # A recording has no boot to wait after.
        r = h.run(["check", "--boot-grace", "300", "--snapshot", os.path.join(h.SOURCE_DIR, "examples",
                                                                              "h100-legacy-flag.json")], raw=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--snapshot excludes --boot-grace", r.stderr)
        r = h.run(["check", "--rules", "PD004", "--no-systemd"], raw=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--rules takes rules that can make a problem (DRV001, DRV002, DRV005, DRV003, DRV006, GPU001, PM001)", r.stderr)

    def test_a_hung_nvml_is_unknown_within_the_rule_timeout(self):
        h.require_binary(self)
        tmp = tempfile.mkdtemp(prefix="gpuwarm-npd-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        root = h.FakeRoot()
        self.addCleanup(root.cleanup)
        root.driver(gpus=1).daemon_binary()
        path = os.path.join(tmp, "hung.json")
        with open(path, "w") as f:
            json.dump(h.scenario([h.gpu(0)], init={"delay_ms": 600000}), f)
        config = load("gpuwarm-persistence.json")
        rule = dict(config["rules"][0])
        # The shipped 20 s NVML limit would make this test slow; the same contract holds with a shorter one.
        rule["args"] = [a if a != "20" else "1" for a in rule["args"]]
        self.assertEqual(npd_run(config, rule, root, path), ("Unknown", "NVML001 nvml timeout"))


def admits_node_critical(test, docs, ds):
    """system-node-critical outside kube-system needs a quota admitting it (GKE refuses the pods otherwise)."""
    pod = ds["spec"]["template"]["spec"]
    test.assertEqual(pod["priorityClassName"], "system-node-critical")
    quota = docs["ResourceQuota"]
    test.assertEqual(quota["metadata"]["namespace"], ds["metadata"]["namespace"])
    (expr,) = quota["spec"]["scopeSelector"]["matchExpressions"]
    test.assertEqual((expr["scopeName"], expr["operator"]), ("PriorityClass", "In"))
    test.assertIn(pod["priorityClassName"], expr["values"])


def node_agent_pod(test, pod, image_arch="amd64"):
    """What both DaemonSets share: GPU nodes of the image's architecture, every drain or quarantine taint
    tolerated, and the host read-only at /host (HostToContainer: the GPU Operator's later mounts appear)."""
    test.assertTrue(pod["nodeSelector"], "GPU nodes only")
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    exprs = {e["key"]: e for e in term["matchExpressions"]}
    test.assertEqual((exprs["kubernetes.io/arch"]["operator"], exprs["kubernetes.io/arch"]["values"]), ("In", [image_arch]))
    effects = {(t.get("key"), t["operator"], t["effect"]) for t in pod["tolerations"]}
    test.assertEqual(effects, {(None, "Exists", "NoSchedule"), (None, "Exists", "NoExecute")})
    volumes = {v["name"]: v for v in pod["volumes"]}
    host_mounts = {}
    for c in pod["containers"] + pod.get("initContainers", []):
        for m in c.get("volumeMounts", []):
            test.assertIn(m["name"], volumes)
            if "hostPath" in volumes[m["name"]]:
                test.assertTrue(m["readOnly"], m["name"])
                host_mounts[m["mountPath"]] = (volumes[m["name"]]["hostPath"]["path"], m.get("mountPropagation"))
    test.assertEqual(host_mounts, {"/host": ("/", "HostToContainer")})


class Manifests(unittest.TestCase):
    def test_exporter_daemonset_and_service(self):
        with open(os.path.join(K8S, "gpuwarm-exporter.yaml")) as f:
            docs = {d["kind"]: d for d in yaml.safe_load_all(f) if d}
        self.assertEqual(set(docs), {"Namespace", "ResourceQuota", "DaemonSet", "Service"})
        ds = docs["DaemonSet"]
        pod = ds["spec"]["template"]["spec"]
        node_agent_pod(self, pod)
        admits_node_critical(self, docs, ds)
        (container,) = pod["containers"]
        self.assertEqual(container["args"][:2], ["metrics", "--listen"])
        # The node's address and name: a stable `instance` for the alert rules, and the host's probe baseline.
        self.assertTrue(pod["hostNetwork"])
        self.assertEqual(pod["dnsPolicy"], "ClusterFirstWithHostNet")
        self.assertEqual(container["args"][2], "$(HOST_IP):9839")
        env = {e["name"]: e for e in container["env"]}
        self.assertEqual(env["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"], "status.hostIP")
        args = container["args"]
        self.assertEqual(args[args.index("--root") + 1], "/host")
        # As root, /host's libnvidia-ml is loaded only when vouched for as the node's own /.
        self.assertIn("--trust-root", args)
        self.assertTrue(args[args.index("--probe-baseline") + 1].startswith("/host/var/lib/gpuwarm/"))
        self.assertTrue(env["DBUS_SYSTEM_BUS_ADDRESS"]["value"].startswith("unix:path=/host/run/"))
        self.assertEqual(ds["spec"]["selector"]["matchLabels"], ds["spec"]["template"]["metadata"]["labels"])
        svc = docs["Service"]
        self.assertEqual(svc["spec"]["selector"], ds["spec"]["template"]["metadata"]["labels"])
        port_names = {p["name"] for p in container["ports"]}
        self.assertTrue(all(p["targetPort"] in port_names for p in svc["spec"]["ports"]))
        self.assertEqual(str(container["ports"][0]["containerPort"]), svc["metadata"]["annotations"]["prometheus.io/port"])

    def test_npd_daemonset_of_its_own(self):
        with open(os.path.join(NPD, "gpuwarm-npd.yaml")) as f:
            text = f.read()
        docs = {d["kind"]: d for d in yaml.safe_load_all(text) if d}
        self.assertEqual(set(docs), {"Namespace", "ResourceQuota", "ServiceAccount", "ClusterRoleBinding", "DaemonSet"})
        ds = docs["DaemonSet"]
        pod = ds["spec"]["template"]["spec"]
        node_agent_pod(self, pod)
        admits_node_critical(self, docs, ds)
        self.assertEqual(ds["spec"]["selector"]["matchLabels"], ds["spec"]["template"]["metadata"]["labels"])
        # NPD's own role, bound to the account the pod runs as.
        binding = docs["ClusterRoleBinding"]
        self.assertEqual(binding["roleRef"]["name"], "system:node-problem-detector")
        (subject,) = binding["subjects"]
        self.assertEqual((subject["name"], subject["namespace"]), (pod["serviceAccountName"], ds["metadata"]["namespace"]))
        self.assertEqual(docs["ServiceAccount"]["metadata"]["name"], pod["serviceAccountName"])
        (npd,) = pod["containers"]
        (install,) = pod["initContainers"]
        with open(os.path.join(K8S, "gpuwarm-exporter.yaml")) as f:
            exporter = [d for d in yaml.safe_load_all(f) if d and d["kind"] == "DaemonSet"][0]
        self.assertEqual(install["image"], exporter["spec"]["template"]["spec"]["containers"][0]["image"])
        # The binary the configs run is where the init container copies it, and NPD reads both configs.
        bin_volume = next(m["name"] for m in install["volumeMounts"])
        self.assertIn({"name": bin_volume, "mountPath": "/opt/gpuwarm", "readOnly": True}, npd["volumeMounts"])
        for name in NPD_CONFIGS:
            self.assertTrue(load(name)["rules"][0]["path"].startswith("/opt/gpuwarm/"))
        (flag,) = [a for a in npd["command"] if a.startswith("--config.custom-plugin-monitor=")]
        config_mount = next(m for m in npd["volumeMounts"] if m["name"] == "gpuwarm-config")
        self.assertEqual(flag.split("=", 1)[1].split(","), [f"{config_mount['mountPath']}/{n}" for n in NPD_CONFIGS])
        configmap = next(v for v in pod["volumes"] if v["name"] == "gpuwarm-config")["configMap"]["name"]
        self.assertIn(f"create configmap {configmap}", text)
        self.assertIn(f"-n {ds['metadata']['namespace']} create configmap", text)
        self.assertEqual(npd["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName")
        # Room for two checks at once beside NPD (upstream allows NPD alone 80Mi), and no CPU limit to throttle
        # an nvmlInit on GPUs that de-initialized into NPD's timeout.
        limits = npd["resources"]["limits"]
        self.assertNotIn("cpu", limits)
        self.assertTrue(limits["memory"].endswith("Mi") and int(limits["memory"][:-2]) >= 80 + 2 * 27, limits)
        # The files its instructions name exist.
        for path in re.findall(r"contrib/kubernetes/[\w./-]*\w", text):
            self.assertTrue(os.path.exists(os.path.join(h.SOURCE_DIR, path)), path)

    def test_containerfile_layout(self):
        with open(os.path.join(K8S, "Containerfile")) as f:
            text = f.read()
        self.assertIn('ENTRYPOINT ["/opt/gpuwarm/bin/gpuwarm"]', text)  # the path the NPD configs run
        r = subprocess.run(["sh", "-n", "-c", re.search(r"^RUN (.*?)(?=^\S)", text, re.S | re.M).group(1)
                            .replace("\\\n", "\n")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        dist = os.environ.get("GPUWARM_DIST", "")
        if not os.path.isdir(dist):
            self.skipTest("GPUWARM_DIST not set: scripts/test.sh builds the packages the image copies")
        version = re.search(r"ARG VERSION=(\S+)", text).group(1)
        for src in re.search(r"^COPY (.*) /tmp/gpuwarm/$", text, re.M).group(1).split():
            path = os.path.join(dist, os.path.basename(src.replace("${VERSION}", version)))
            self.assertTrue(os.path.exists(path), path)


if __name__ == "__main__":
    unittest.main()
