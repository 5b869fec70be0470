"""The chaos run behind scripts/chaos: a real coordinator, honest clients and
one hostile tenant per attack of "Hostile tenant I", for a bounded time.

Phases (seconds after the first committed round):
  baseline   honest clients only (every attacker registered and idle)
  slots      each attack alone, one after the other: per-attack figures
  together   every attack at once: do honest rounds keep committing?
  settle     attacks stopped: do connections and fds come back?

Every second it samples the coordinator: database size (SQLite page_count x
page_size, read-only) and WAL file size, log size, RSS (/proc/PID/status),
open fds (/proc/PID/fd), and /metrics (rounds committed, updates accepted,
rejections). It prints a table per phase and PASS/FAIL against thresholds,
writes summary.json (phases, attackers' answers, every sample) into the
work directory, and exits 1 on FAIL. DB and log growth of a phase are
judged beyond the honest growth expected for it: the no-attack rate,
interpolated between the baseline and the settle phase (the honest rate
rises with the round count, as each version's receipt holds the history).

Used through scripts/chaos (which finds the binaries and the Python);
run `scripts/chaos --help` for the options.
"""

import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

# One list of attacks, owned by the attacker (this directory is on sys.path
# when run.py runs as a script; attacker.py imports grpc only when it runs).
from attacker import ATTACKS  # noqa: E402

# Thresholds (also stated in README.md, "Operations" → "Chaos run").
MIN_RATE_RATIO = 0.5  # honest rounds and accepted updates per minute vs baseline
MAX_EXCESS_DB = 1_000_000  # DB growth of one attack slot beyond the honest rate
MAX_EXCESS_LOG = 1_000_000  # log growth of one attack slot beyond the honest rate
MAX_RSS_GROWTH = 100 << 20  # peak RSS under attack over the baseline peak
MAX_FD_LEAK = 16  # fds after settling over the baseline peak


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


class Sampler:
    def __init__(self, pid, db, log, metrics_url, job):
        self.pid, self.db, self.log, self.url, self.job = pid, db, log, metrics_url, job

    def metrics(self):
        try:
            text = urllib.request.urlopen(self.url, timeout=5).read().decode()
        except OSError:
            return None
        out = {"rejections": 0}
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            m = re.match(r"^([a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$", line)
            if not m:
                continue
            name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
            if name == "fedsec_rounds_total" and 'outcome="committed"' in labels:
                out["rounds"] = value
            elif name == "fedsec_updates_accepted_total":
                out["accepted"] = out.get("accepted", 0) + value
            elif name == "fedsec_rejections_total":
                out["rejections"] += value
            elif name == "fedsec_rate_limited_total":
                out["rate_limited"] = out.get("rate_limited", 0) + value
            elif name == "fedsec_connections_refused_total":
                out["conn_refused"] = out.get("conn_refused", 0) + value
            elif name == "fedsec_connections" and 'state="open"' in labels:
                out["conns_open"] = value
        return out

    def db_bytes(self):
        try:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
            try:
                pages = conn.execute("PRAGMA page_count").fetchone()[0]
                size = conn.execute("PRAGMA page_size").fetchone()[0]
            finally:
                conn.close()
            return pages * size
        except sqlite3.Error:
            return None

    def sample(self):
        s = {"t": time.time()}
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        s["rss"] = int(line.split()[1]) * 1024
            s["fds"] = len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            s["dead"] = True
            return s
        s["db"] = self.db_bytes()
        try:
            s["wal"] = os.path.getsize(self.db + "-wal")
        except OSError:
            s["wal"] = 0
        s["log"] = os.path.getsize(self.log)
        s["m"] = self.metrics()
        return s


def start_attacker(argv, work, name):
    """One attacker process: its JSON report on stdout, its log in the work dir."""
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE,
        stderr=open(os.path.join(work, f"attack-{name}.log"), "ab"), text=True,
    )


def mb(x):
    return f"{x / 1e6:.2f}"


def main():
    p = argparse.ArgumentParser(prog="scripts/chaos")
    p.add_argument("--coordinator", required=True)
    p.add_argument("--client", required=True)
    p.add_argument("--stubs", required=True)
    p.add_argument("--proto", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--duration", type=float, default=300)
    p.add_argument("--honest", type=int, default=4)
    p.add_argument("--deadline-ms", type=int, default=2000)
    a = p.parse_args()

    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    procs = []

    def stop_all():
        for pr in procs:
            if pr.poll() is None:
                pr.send_signal(signal.SIGTERM)
        for pr in procs:
            try:
                pr.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pr.kill()

    # Time plan: the baseline, one slot per attack, all together, settle.
    D = a.duration
    base_s = max(10.0, 0.15 * D)
    together_s = max(20.0, 0.25 * D)
    settle_s = max(8.0, 0.05 * D)
    slot_s = max(3.0, (D - base_s - together_s - settle_s) / len(ATTACKS))
    plan = [("baseline", 0.0, base_s)]
    t = base_s
    for name in ATTACKS:
        plan.append((name, t, t + slot_s))
        t += slot_s
    plan.append(("together", t, t + together_s))
    t += together_s
    plan.append(("settle", t, t + settle_s))
    end = t + settle_s

    # PKI: honest tenants first, then one tenant per attack.
    pki = os.path.join(work, "pki")
    n_clients = a.honest + len(ATTACKS)
    sh(a.coordinator, "certs", "init", "--out", pki, "--clients", str(n_clients), "--force",
       stdout=subprocess.DEVNULL)
    manifest = json.load(open(os.path.join(pki, "manifest.json")))
    clients = manifest["clients"]
    honest, hostile = clients[: a.honest], clients[a.honest :]

    port, mport = free_port(), free_port()
    data = os.path.join(work, "data")
    job = "chaos"
    cfg = os.path.join(work, "coordinator.toml")
    with open(cfg, "w") as f:
        f.write(f"""listen = "127.0.0.1:{port}"
data_dir = "{data}"
admins = ["admin"]
poll_interval_ms = 500

[tls]
ca = "{manifest['ca']}"
cert = "{manifest['server']['cert']}"
key = "{manifest['server']['key']}"

[signing]
key_file = "{manifest['release_signing_key']}"

[metrics]
listen = "127.0.0.1:{mport}"

[[jobs]]
id = "{job}"
model = {{ kind = "mlp", input_dim = 51, hidden = [8] }}
rounds = 1000000
population = {n_clients}
population_drift = 0.5
sampling_rate = 0.5
noise_multiplier = 10.0
delta = 1e-5
round_deadline_ms = {a.deadline_ms}

[jobs.training]
local_epochs = 1
batch_size = 32
learning_rate = 0.05
""")
    log = os.path.join(work, "coordinator.log")
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
    coord = subprocess.Popen(
        [a.coordinator, "serve", "--config", cfg],
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env,
    )
    procs.append(coord)
    url = f"http://127.0.0.1:{mport}/metrics"
    sampler = Sampler(coord.pid, os.path.join(data, "coordinator.db"), log, url, job)
    try:
        for _ in range(300):
            if coord.poll() is not None:
                raise SystemExit(f"the coordinator exited: see {log}")
            if sampler.metrics() is not None:
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the coordinator did not start within 30 s")

        # Honest tenants: synthetic logs, one real fedsec-client each.
        logs = os.path.join(work, "logs")
        sh(a.client, "synth", "--tenants", str(a.honest), "--out", logs, "--seed", "1",
           "--median-sessions", "300", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i, c in enumerate(honest):
            ccfg = os.path.join(work, f"client-{i}.toml")
            with open(ccfg, "w") as f:
                f.write(f"""endpoint = "https://localhost:{port}"
job = "{job}"
state_dir = "{work}/client-state-{i}"
seed = {i}
release_public_key = "{manifest['release_public_key']}"

[tls]
ca = "{manifest['ca']}"
cert = "{c['cert']}"
key = "{c['key']}"

[data]
files = [{{ log = "{logs}/tenant-{i:03}.log", labels = "{logs}/tenant-{i:03}.labels.jsonl" }}]

[privacy]
max_epsilon = 1000.0
""")
            procs.append(subprocess.Popen(
                [a.client, "run", "--config", ccfg],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"client-{i}.log"), "ab"),
            ))
        honest_procs = procs[1:]

        # Attackers: registered now, attacking in their slot and together.
        go = os.path.join(work, "go")
        attackers = []
        attacker_argv = {}
        restarted = {}
        for k, (name, c) in enumerate(zip(ATTACKS, hostile)):
            _, s0, s1 = next(x for x in plan if x[0] == name)
            _, g0, g1 = next(x for x in plan if x[0] == "together")
            ready = os.path.join(work, f"ready-{name}")
            argv = [sys.executable, os.path.join(here, "attacker.py"), "--stubs", a.stubs,
                    "--endpoint", f"localhost:{port}", "--ca", manifest["ca"],
                    "--cert", c["cert"], "--key", c["key"], "--job", job, "--attack", name,
                    "--windows", f"{s0}:{s1},{g0}:{g1}", "--go", go, "--ready", ready,
                    "--victim", honest[0]["client_id"], "--source", f"127.0.0.{2 + k}",
                    "--seed", str(k)]
            pr = start_attacker(argv, work, name)
            procs.append(pr)
            attackers.append((name, c, pr, ready))
            attacker_argv[name] = argv
        for _ in range(600):
            if all(os.path.exists(r) for _, _, _, r in attackers):
                break
            if any(pr.poll() is not None for _, _, pr, _ in attackers):
                raise SystemExit(f"an attacker exited at start: see {work}/attack-*.log")
            time.sleep(0.1)
        else:
            raise SystemExit("attackers did not register within 60 s")
        revoked = next(c for name, c, _, _ in attackers if name == "revoked")
        sh(a.coordinator, "admin", "--endpoint", f"https://localhost:{port}",
           "--ca", manifest["ca"], "--cert", manifest["admin"]["cert"],
           "--key", manifest["admin"]["key"], "clients", "revoke", revoked["client_id"],
           "--reason", "chaos: revoked attacker", stdout=subprocess.DEVNULL)

        # Warm-up: until the honest clients have trained and a round committed.
        warm_until = time.time() + 120
        while True:
            m = sampler.metrics() or {}
            if m.get("accepted", 0) >= 1 and m.get("rounds", 0) >= 2:
                break
            if time.time() > warm_until:
                raise SystemExit(f"no round committed with an honest update within 120 s: see {work}")
            time.sleep(0.5)

        t0 = time.time()
        with open(go + ".tmp", "w") as f:
            f.write(repr(t0))
        os.rename(go + ".tmp", go)
        print(f"chaos: {len(ATTACKS)} attacks, {a.honest} honest clients, "
              f"{D:.0f} s ({base_s:.0f} s baseline, {slot_s:.0f} s per attack, "
              f"{together_s:.0f} s together, {settle_s:.0f} s settle); work dir {work}",
              flush=True)
        samples = []
        dead = None
        while time.time() < t0 + end:
            s = sampler.sample()
            s["t"] -= t0
            samples.append(s)
            if s.get("dead"):
                dead = "the coordinator died"
                break
            gone = [i for i, pr in enumerate(honest_procs) if pr.poll() is not None]
            if gone:
                dead = f"honest client(s) {gone} exited"
                break
            # An attacker killed by a signal died in its own client library
            # (grpcio's C core has aborted on a GOAWAY it was sent), not by
            # anything the coordinator may do to it: restart it once, into
            # what is left of its windows, and say so. A second death, or
            # an exit with a status, is reported as a failure.
            for i, (name, c, pr, ready) in enumerate(attackers):
                if pr.poll() is not None and pr.returncode < 0 and name not in restarted:
                    restarted[name] = -pr.returncode
                    print(f"chaos: attacker {name} died by signal {-pr.returncode} "
                          f"(its client library; see {work}/attack-{name}.log): restarted once",
                          flush=True)
                    pr2 = start_attacker(attacker_argv[name] + ["--restarted"], work, name)
                    procs.append(pr2)
                    attackers[i] = (name, c, pr2, ready)
            time.sleep(1.0)
        job_state = subprocess.run(
            [a.coordinator, "admin", "--endpoint", f"https://localhost:{port}",
             "--ca", manifest["ca"], "--cert", manifest["admin"]["cert"],
             "--key", manifest["admin"]["key"], "--json", "jobs", "get", job],
            capture_output=True, text=True,
        )
    finally:
        stop_all()

    reports = {}
    for name, _, pr, _ in attackers:
        out = pr.stdout.read() if pr.stdout else ""
        try:
            reports[name] = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            reports[name] = {"error": "no report"}
        if name in restarted:
            reports[name]["restarted_after_signal"] = restarted[name]
    return report(plan, samples, reports, dead, job_state, coord.returncode, work)


def window(samples, t0, t1):
    return [s for s in samples if t0 <= s["t"] < t1 and not s.get("dead") and s.get("m")]


def report(plan, samples, reports, dead, job_state, rc, work):
    rows, fails = [], []
    if dead:
        fails.append(dead)
    phases = {}
    for name, t0, t1 in plan:
        w = window(samples, t0, t1)
        if len(w) < 2:
            fails.append(f"{name}: fewer than 2 samples")
            continue
        first, last = w[0], w[-1]
        secs = last["t"] - first["t"]
        dm = lambda k: last["m"].get(k, 0) - first["m"].get(k, 0)  # noqa: E731
        phases[name] = {
            "seconds": secs,
            "rounds_per_min": 60 * dm("rounds") / secs if secs else 0,
            "accepted_per_min": 60 * dm("accepted") / secs if secs else 0,
            "db": (last["db"] or 0) - (first["db"] or 0),
            "wal_end": last["wal"],
            "log": last["log"] - first["log"],
            "rss_peak": max(s["rss"] for s in w),
            "fds_peak": max(s["fds"] for s in w),
            "fds_end": last["fds"],
            "rejections": dm("rejections"),
            "rate_limited": dm("rate_limited"),
            "conn_refused": dm("conn_refused"),
        }
    b = phases.get("baseline")
    if b is None:
        fails.append("no baseline")
        b = {"seconds": 1, "db": 0, "log": 0, "rss_peak": 0, "fds_peak": 0,
             "rounds_per_min": 0, "accepted_per_min": 0}
    # The honest growth rate rises with the round count (each version's
    # receipt holds the round history), so the honest reference for a phase
    # is interpolated between the baseline's rate and the settle phase's
    # (both without attacks) at the phase's midpoint.
    mids = {n: (t0 + t1) / 2 for n, t0, t1 in plan}
    s_ph = phases.get("settle", b)

    def honest(key, name, secs):
        r0, r1 = b[key] / b["seconds"], s_ph[key] / max(s_ph["seconds"], 1e-9)
        m0, m1 = mids["baseline"], mids["settle"]
        rate = r0 + (r1 - r0) * (mids[name] - m0) / (m1 - m0) if m1 > m0 else r0
        return max(rate, r0) * secs
    hdr = ("phase", "s", "rounds/min", "honest upd/min", "DB +MB", "excess DB MB",
           "log +MB", "excess log MB", "peak RSS MB", "peak fds", "rejected", "rate-limited",
           "conns refused", "attacker calls")
    for name, _, _ in plan:
        ph = phases.get(name)
        if ph is None:
            continue
        ex_db = ph["db"] - honest("db", name, ph["seconds"])
        ex_log = ph["log"] - honest("log", name, ph["seconds"])
        ph["excess_db"], ph["excess_log"] = ex_db, ex_log
        calls = 0
        r = reports.get(name)
        if r and "windows" in r and r["windows"]:
            calls = sum(r["windows"][0]["answers"].values())
        elif name == "together":
            calls = sum(sum(r["windows"][1]["answers"].values())
                        for r in reports.values() if len(r.get("windows", [])) > 1)
        rows.append((name, f"{ph['seconds']:.0f}", f"{ph['rounds_per_min']:.1f}",
                     f"{ph['accepted_per_min']:.1f}", mb(ph["db"]), mb(ex_db), mb(ph["log"]),
                     mb(ex_log), f"{ph['rss_peak'] / 2**20:.1f}", str(ph["fds_peak"]),
                     f"{ph['rejections']:.0f}", f"{ph['rate_limited']:.0f}",
                     f"{ph['conn_refused']:.0f}", str(calls)))
        if name in ATTACKS or name == "together":
            if ex_db > MAX_EXCESS_DB:
                fails.append(f"{name}: DB grew {mb(ex_db)} MB beyond the honest rate (bound {mb(MAX_EXCESS_DB)})")
            if ex_log > MAX_EXCESS_LOG:
                fails.append(f"{name}: log grew {mb(ex_log)} MB beyond the honest rate (bound {mb(MAX_EXCESS_LOG)})")
            if ph["rss_peak"] - b["rss_peak"] > MAX_RSS_GROWTH:
                fails.append(f"{name}: peak RSS {ph['rss_peak'] / 2**20:.0f} MB, baseline {b['rss_peak'] / 2**20:.0f} MB (bound +100 MB)")
    widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    for r in [hdr] + rows:
        print("  ".join(str(x).rjust(w) for x, w in zip(r, widths)))

    tg = phases.get("together")
    if tg:
        for k, what in (("rounds_per_min", "rounds"), ("accepted_per_min", "honest updates")):
            if b[k] <= 0:
                fails.append(f"baseline committed no {what}")
            elif tg[k] < MIN_RATE_RATIO * b[k]:
                fails.append(f"together: {what}/min {tg[k]:.1f} < {MIN_RATE_RATIO} x baseline {b[k]:.1f}")
    slots = [phases[n] for n in ATTACKS if n in phases]
    if slots:
        secs = sum(p["seconds"] for p in slots)
        r = sum(p["rounds_per_min"] * p["seconds"] for p in slots) / secs
        if r < MIN_RATE_RATIO * b["rounds_per_min"]:
            fails.append(f"attack slots: rounds/min {r:.1f} < {MIN_RATE_RATIO} x baseline")
    st = phases.get("settle")
    if st and st["fds_end"] > b["fds_peak"] + MAX_FD_LEAK:
        fails.append(f"settle: {st['fds_end']} fds open after the attacks, baseline peak {b['fds_peak']} (bound +{MAX_FD_LEAK})")
    for name, r in reports.items():
        if "error" in r or len(r.get("windows", [])) < 2:
            fails.append(f"attacker {name}: {r.get('error', 'did not run both windows')}")
    try:
        state = json.loads(job_state.stdout)["state"]
    except (ValueError, KeyError, TypeError):
        state = f"unknown ({job_state.stderr.strip()[:200]})"
    if "RUNNING" not in str(state).upper():
        fails.append(f"job state at the end: {state} (expected RUNNING)")
    if rc != 0:
        fails.append(f"the coordinator exited with {rc} on SIGTERM")

    summary = {"phases": phases, "attackers": reports, "job_state": state, "samples": samples,
               "thresholds": {"min_rate_ratio": MIN_RATE_RATIO, "max_excess_db": MAX_EXCESS_DB,
                              "max_excess_log": MAX_EXCESS_LOG, "max_rss_growth": MAX_RSS_GROWTH,
                              "max_fd_leak": MAX_FD_LEAK},
               "failures": fails}
    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"job state at the end: {state}; coordinator exit code {rc}")
    print(f"thresholds: honest rounds and updates/min under all attacks >= {MIN_RATE_RATIO} x baseline; "
          f"per attack: DB and log each <= +1 MB beyond the honest rate, peak RSS <= baseline + 100 MB; "
          f"fds after settling <= baseline peak + {MAX_FD_LEAK}; job RUNNING; clean exit")
    if fails:
        print("FAIL:\n  " + "\n  ".join(fails))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
