#!/usr/bin/python3
"""Ansible module: runs the installed gpuwarm (diagnose, fix, verify) with --json
and turns its report into a task result. gpuwarm makes every decision; this
file only maps exit codes and reports onto changed/failed/msg, facts and diff."""

import json
import os
import shlex
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: gpuwarm
short_description: Keep NVIDIA GPUs initialized through nvidia-persistenced under systemd
description:
  - Runs the gpuwarm binary already on the node (the gpuwarm role installs it) and reports what it found
    and did. C(state=persistent) runs C(gpuwarm fix), which acts only where the persistence runbook applies;
    it writes a systemd drop-in if the unit needs one, enables and starts nvidia-persistenced through
    systemd's D-Bus API, and verifies every GPU. It never runs C(nvidia-smi -pm 1).
  - Nodes whose verdict routes elsewhere (driver-install problem, thermal/power or RAS, pinned application
    clocks, driver update pending reboot, masked unit) are left unchanged and reported with a warning, not
    failed, unless I(fail_on_routed) is set.
  - A node gpuwarm cannot tell about (exit 9, when a fact the verdict needs could not be read, systemd's bus did
    not answer, or another gpuwarm command held the node) is left unchanged and failed, unless I(fail_on_unknown)
    is unset. Unknown is never a success.
  - Exit 7 (the node's lock held by another fix, reset or reload-modules, or by a probe still timing the GPUs
    after gpuwarm's own 60 s wait) is tried again, I(lock_retries) times, I(lock_retry_delay) seconds apart.
  - Check mode runs C(gpuwarm fix --dry-run) and reports changed when the plan has steps. Diff mode shows
    the drop-in file and the unit/GPU state before and after.
options:
  state:
    description:
      - C(persistent) diagnoses, fixes where allowed and verifies (C(gpuwarm fix)).
      - C(diagnosed) only diagnoses (C(gpuwarm diagnose)); never changes anything.
      - C(verified) only runs the verification list (C(gpuwarm verify)); fails when a check fails.
    type: str
    choices: [persistent, diagnosed, verified]
    default: persistent
  binary:
    description: Path of the gpuwarm binary on the node.
    type: path
    default: /usr/local/bin/gpuwarm
  settle:
    description: Seconds to wait before reading persistence again when verifying (C(--settle)).
    type: float
    default: 3
  samples:
    description: Clock samples taken when verifying (C(--samples)).
    type: int
    default: 5
  sample_interval:
    description: Seconds between clock samples (C(--sample-interval)).
    type: float
    default: 0.5
  job_timeout:
    description: Seconds to wait for systemd's start job (C(--job-timeout)).
    type: int
    default: 90
  fail_on_routed:
    description: Fail (instead of warn) on nodes whose verdict routes to another runbook.
    type: bool
    default: false
  fail_on_unknown:
    description: Fail on nodes gpuwarm cannot tell about (exit 9); unset, they are left unchanged with a warning.
    type: bool
    default: true
  lock_retries:
    description: How many times to run again when the node's lock is held (exit 7).
    type: int
    default: 3
  lock_retry_delay:
    description: Seconds between those runs.
    type: float
    default: 20
  node_name:
    description: Name written into the returned report as C(node), so C(gpuwarm fleet-summary) groups by
      it (the role passes the inventory name). Default the node's own hostname only.
    type: str
  root:
    description: Read /proc, /sys, /dev, /run and /etc under this directory (C(--root)); for tests and images.
    type: path
  trust_root:
    description: With I(root), that directory is this host's own / mounted elsewhere (C(--trust-root)), so
      gpuwarm, run as root, loads its libnvidia-ml. Never for a container's or an unpacked image's tree; without
      it, as root, NVML stays closed and the answer is cannot tell (UNK011).
    type: bool
    default: false
  nvml_library:
    description: NVML library to load instead of the system's (C(--nvml)).
    type: path
  kernel_log:
    description: Kernel log file to scan instead of /dev/kmsg (C(--kernel-log)).
    type: path
  nvml_timeout:
    description: Seconds before gpuwarm gives up on NVML (C(--nvml-timeout)); gpuwarm's default when unset.
    type: float
  dcgm_level:
    description: With state=persistent or verified, also run C(dcgmi diag -r N) (1-4) after the fix (C(--dcgm-level)).
    type: int
requirements: [gpuwarm on the node, systemd for state=persistent]
"""

EXAMPLES = r"""
- name: Keep the GPUs initialized
  gpuwarm:
    state: persistent
  register: gpuwarm_result

- name: Only look
  gpuwarm:
    state: diagnosed
"""

RETURN = r"""
verdict:
  description: gpuwarm's verdict code (healthy, action-needed, reboot-pending, driver-install, ras, pinned-clocks,
    cannot-tell, persistence-optional).
  type: str
  returned: when gpuwarm produced a report
routed:
  description: True when the verdict belongs to another runbook (or gpuwarm could not tell) and the node was left
    unchanged.
  type: bool
  returned: always
unknown:
  description: True when gpuwarm could not tell (exit 9) and the node was left unchanged.
  type: bool
  returned: always
outcome:
  description: For state=persistent, gpuwarm fix's outcome (act, nothing-to-do, refused, no-service-manager; error when the node lock could not be opened).
  type: str
  returned: when state=persistent
rc:
  description: gpuwarm's exit code.
  type: int
  returned: always
report:
  description: gpuwarm's JSON report as printed (what gpuwarm fleet-summary reads), with C(node) added.
  type: dict
  returned: when gpuwarm produced a report
ansible_facts:
  description: C(gpuwarm) with the verdict, driver versions, the running systemd's version (systemd_version) and
    whether it knows ExecCondition= (exec_condition), and per-GPU facts (index, uuid, name, persistence, held_by_daemon, clocks, active clock-event reasons;
    persistence_after when verified).
  type: dict
  returned: when gpuwarm produced a report
"""

# gpuwarm's documented exit codes (README, `gpuwarm fix --help`).
ROUTED_CODES = {3: "refused: an action of yours first", 4: "refused: reboot pending", 5: "refused: routed elsewhere"}
CANNOT_TELL = 9
LOCKED = 7
FIX_FAILURES = {1: "a step failed", 2: "bad command line", 6: "no systemd on this node",
                LOCKED: "the node's lock is held (another gpuwarm fix, reset or reload-modules, or a probe or watch "
                        "--load still timing the GPUs)",
                8: "verification failed after the steps"}
DROPIN = "/etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf"


def source_args(p):
    args = []
    if p["root"]:
        args += ["--root", p["root"]]
        if p["trust_root"]:
            args += ["--trust-root"]
    if p["nvml_library"]:
        args += ["--nvml", p["nvml_library"]]
    if p["kernel_log"]:
        args += ["--kernel-log", p["kernel_log"]]
    if p["nvml_timeout"] is not None:
        args += ["--nvml-timeout", str(p["nvml_timeout"])]
    return args


def verify_args(p):
    args = ["--settle", str(p["settle"]), "--samples", str(p["samples"]),
            "--sample-interval", str(p["sample_interval"])]
    if p["dcgm_level"] is not None:
        args += ["--dcgm-level", str(p["dcgm_level"])]
    return args


def gpu_facts(diagnosis, verify):
    after = {g.get("index"): g.get("persistence_after") for g in (verify or {}).get("gpus", [])}
    gpus = []
    for g in (diagnosis or {}).get("gpus", []):
        fact = {k: g.get(k) for k in ("index", "uuid", "name", "pci_bus_id", "persistence", "held_by_daemon",
                                      "pstate", "clocks_mhz", "event_reasons_active")}
        if g.get("index") in after:
            fact["persistence_after"] = after[g.get("index")]
        gpus.append(fact)
    return gpus


def unit_line(diagnosis):
    service = ((diagnosis or {}).get("snapshot") or {}).get("service") or {}

    def value(key):
        v = service.get(key)
        return v if isinstance(v, (str, bool)) else "unknown"
    if not service.get("reachable", False):
        return "nvidia-persistenced.service: systemd not reachable"
    return f"nvidia-persistenced.service: {value('unit_file_state')}, {value('active_state')}"


def state_text(unit, gpus, key):
    lines = [unit]
    for g in gpus:
        lines.append(f"GPU {g.get('index')} persistence: {g.get(key) or 'unknown'}")
    return "\n".join(lines) + "\n"


def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def fix_diff(p, report, before_dropin, check_mode):
    """The drop-in (before/after) and the unit and GPU state (before/after)."""
    diffs = []
    root = (p["root"] or "/").rstrip("/")
    for step in report.get("steps", []):
        if step.get("kind") == "write-file":
            diffs.append({"before_header": root + step["path"], "after_header": root + step["path"],
                          "before": before_dropin, "after": step.get("content", "")})
    diagnosis = report.get("diagnosis")
    gpus = gpu_facts(diagnosis, report.get("verify"))
    before = state_text(unit_line(diagnosis), gpus, "persistence")
    if report.get("outcome") == "act":
        if check_mode:
            after = state_text("nvidia-persistenced.service: enabled, active (planned)",
                               [dict(g, persistence="Enabled (expected)") for g in gpus], "persistence")
        else:
            after = state_text("nvidia-persistenced.service: enabled, active", gpus, "persistence_after")
        diffs.append({"before_header": "node state", "after_header": "node state", "before": before, "after": after})
    return diffs


def known(fact):
    """A snapshot fact's value, or None where gpuwarm recorded why it is missing ({"missing": ...})."""
    return None if isinstance(fact, dict) else fact


def noexec_mount(path):
    try:
        return bool(os.statvfs(path).f_flag & os.ST_NOEXEC)
    except OSError:
        return False


def run_gpuwarm(module, args):
    rc, out, err = module.run_command([module.params["binary"]] + args, environ_update={"NO_COLOR": "1"})
    report = None
    if out.strip():
        try:
            report = json.loads(out)
        except ValueError:
            report = None
    return rc, report, out, err


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="persistent", choices=["persistent", "diagnosed", "verified"]),
            binary=dict(type="path", default="/usr/local/bin/gpuwarm"),
            settle=dict(type="float", default=3.0),
            samples=dict(type="int", default=5),
            sample_interval=dict(type="float", default=0.5),
            job_timeout=dict(type="int", default=90),
            fail_on_routed=dict(type="bool", default=False),
            fail_on_unknown=dict(type="bool", default=True),
            lock_retries=dict(type="int", default=3),
            lock_retry_delay=dict(type="float", default=20.0),
            node_name=dict(type="str"),
            root=dict(type="path"),
            trust_root=dict(type="bool", default=False),
            nvml_library=dict(type="path"),
            kernel_log=dict(type="path"),
            nvml_timeout=dict(type="float"),
            dcgm_level=dict(type="int"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    # An option written as null (`binary: ~`, or a variable that came out empty)
    # means "not set": it takes its default rather than reaching the code as None.
    for name, spec in module.argument_spec.items():
        if p.get(name) is None and spec.get("default") is not None:
            p[name] = spec["default"]
    if not 0 <= p["lock_retries"] <= 10 or not 0 <= p["lock_retry_delay"] <= 300:
        module.fail_json(msg="lock_retries must be 0-10 and lock_retry_delay 0-300 seconds", rc=None, routed=False)
    if not os.access(p["binary"], os.X_OK):
        if os.path.isfile(p["binary"]) and noexec_mount(p["binary"]):
            module.fail_json(msg=f"gpuwarm at {p['binary']} cannot run: its filesystem is mounted noexec (the "
                                 "role's check mode stages it in the node's temporary directory: set "
                                 "gpuwarm_scratch_dir to a folder that is not noexec)", rc=None, routed=False)
        module.fail_json(msg=f"gpuwarm is not installed at {p['binary']} (the gpuwarm role installs it; "
                             "set binary= to where it is)", rc=None, routed=False)

    state = p["state"]
    before_dropin = read_text((p["root"] or "/").rstrip("/") + DROPIN)
    if state == "diagnosed":
        args = ["diagnose", "--json"] + source_args(p)
    elif state == "verified":
        args = ["verify", "--json"] + source_args(p) + verify_args(p)
    else:
        args = ["fix", "--json", "--job-timeout", str(p["job_timeout"])] + source_args(p) + verify_args(p)
        if module.check_mode:
            args.append("--dry-run")
    rc, report, out, err = run_gpuwarm(module, args)
    # gpuwarm waited up to 60 s for readings and timings already; another change or a long probe may end soon.
    for _ in range(max(0, p["lock_retries"])):
        if rc != LOCKED:
            break
        time.sleep(max(0.0, p["lock_retry_delay"]))
        rc, report, out, err = run_gpuwarm(module, args)
    command = " ".join(shlex.quote(a) for a in [p["binary"]] + args)
    if not isinstance(report, dict):
        module.fail_json(msg=f"gpuwarm printed no JSON report (exit {rc}): {err.strip() or out.strip()}",
                         rc=rc, cmd=command, stdout=out, stderr=err, routed=False)
    if p["node_name"]:
        report["node"] = p["node_name"]

    # Whatever gpuwarm printed is parsed defensively: a report of an unexpected
    # shape is a failed task with the reason, never a Python traceback.
    try:
        report_result(module, p, state, rc, report, command, out, err, before_dropin)
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as e:
        module.fail_json(msg=f"gpuwarm printed a report of an unexpected shape ({type(e).__name__}: {e})",
                         rc=rc, cmd=command, stdout=out, stderr=err, routed=False)


def report_result(module, p, state, rc, report, command, out, err, before_dropin):

    diagnosis = report if state == "diagnosed" else report.get("diagnosis")
    service = ((diagnosis or {}).get("snapshot") or {}).get("service") or {}
    verdict = (diagnosis or {}).get("verdict") or {}
    result = dict(rc=rc, cmd=command, report=report, stderr=err, changed=False, routed=False, unknown=False,
                  verdict=verdict.get("code"))
    if diagnosis is not None or state == "verified":
        result["ansible_facts"] = {"gpuwarm": {
            "verdict": verdict.get("code"),
            "verdict_title": verdict.get("title"),
            "rule_id": verdict.get("rule_id"),
            "next_step": verdict.get("next_step"),
            "driver": (diagnosis or {}).get("driver"),
            # The running systemd as gpuwarm read it over D-Bus: its Version, and whether it knows ExecCondition=
            # (None where gpuwarm could not ask).
            "systemd_version": known(service.get("manager_version")),
            "exec_condition": known(service.get("exec_condition")),
            "gpus": gpu_facts(diagnosis, report if state == "verified" else report.get("verify")),
        }}

    routed_msg = None
    unknown_msg = None
    if state == "diagnosed":
        if rc not in (0, 3, 4, 5, CANNOT_TELL):
            module.fail_json(msg=f"gpuwarm diagnose failed (exit {rc}): {err.strip()}", **result)
        result["msg"] = verdict.get("title", "")
        if rc in (4, 5):
            routed_msg = f"{verdict.get('title')}. Next: {verdict.get('next_step')}"
        elif rc == CANNOT_TELL:
            unknown_msg = f"{verdict.get('title')}. Next: {verdict.get('next_step')}"
    elif state == "verified":
        if rc == CANNOT_TELL:
            unknown_msg = f"NVML was left closed ({report.get('nvml_not_opened')}); verify again once that ended"
        elif rc not in (0, 8):
            module.fail_json(msg=f"gpuwarm verify failed to run (exit {rc}): {err.strip()}", **result)
        failed = [c for c in report.get("checks", []) if c.get("status") == "fail"]
        result["msg"] = "; ".join(f"{c['id']}: {c['detail']}" for c in failed) or "every check passed or was skipped"
        if failed and unknown_msg is None:
            module.fail_json(**result)
    else:
        result["outcome"] = report.get("outcome")
        if module._diff:
            result["diff"] = fix_diff(p, report, before_dropin, module.check_mode)
        if rc in ROUTED_CODES:
            routed_msg = f"{ROUTED_CODES[rc]}: {report.get('reason')}"
        elif rc == CANNOT_TELL:
            unknown_msg = f"refused: cannot tell: {report.get('reason')}"
        elif rc in FIX_FAILURES:
            result["changed"] = bool(report.get("changed"))
            steps = [s for s in report.get("steps", []) if s.get("status") == "failed"]
            detail = f" ({steps[0]['action']}: {steps[0]['detail']})" if steps else ""
            checks = [c for c in (report.get("verify") or {}).get("checks", []) if c.get("status") == "fail"]
            detail += "".join(f"; {c['id']}: {c['detail']}" for c in checks)
            # A usage error's document says why under "error" (gpuwarm_root without a bus for that tree, say).
            why = report.get('reason') or report.get('error') or ''
            module.fail_json(msg=f"gpuwarm fix: {FIX_FAILURES[rc]}{detail}. {why}".strip(),
                             **result)
        elif rc != 0:
            # Cut short by a signal (128+N): what it did before that is in the report.
            result["changed"] = bool(report.get("changed"))
            module.fail_json(msg=f"gpuwarm fix exited {rc}: {err.strip()}", **result)
        elif module.check_mode:
            planned = [s.get("action") for s in report.get("steps", [])]
            result["changed"] = bool(planned)
            result["msg"] = ("would run: " + "; ".join(planned)) if planned else (report.get("reason") or
                                                                                   "nothing to do")
        else:
            result["changed"] = bool(report.get("changed"))
            result["msg"] = ("enabled and started nvidia-persistenced; verified" if result["changed"]
                             else "nothing to do; verified")

    if unknown_msg is not None:
        # Left unchanged like a routed node (nothing after the diagnosis runs), but not an answer: failed unless
        # the caller chose to be warned instead.
        result["routed"] = True
        result["unknown"] = True
        node = p["node_name"] or "this node"
        rule = verdict.get("rule_id") or ""
        result["msg"] = f"cannot tell: {node}: {unknown_msg}" + (f" [{rule}]" if rule else "")
        if p["fail_on_unknown"]:
            module.fail_json(**result)
        module.warn(result["msg"])
        module.exit_json(failed=False, **result)
    if routed_msg is not None:
        result["routed"] = True
        # Ansible prints module warnings without the host: name it, and the rule that decided.
        node = p["node_name"] or "this node"
        rule = verdict.get("rule_id") or report.get("verdict") or ""
        result["msg"] = f"left unchanged: {node}: {routed_msg}" + (f" [{rule}]" if rule else "")
        if p["fail_on_routed"]:
            module.fail_json(**result)
        module.warn(result["msg"])
    # Ansible marks a result with a non-zero rc failed unless it says otherwise; exit 3/4/5 are answers.
    module.exit_json(failed=False, **result)


if __name__ == "__main__":
    main()
