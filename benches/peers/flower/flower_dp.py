"""Flower side of the peer comparison (see run.sh and benches/README.md).

The same DP-FedAvg job as fedsec's: N numpy clients, every client in every
round (q = 1, cohort N), a model of D float32 parameters, server-side fixed
clipping to C and Gaussian noise z*C on the sum (Flower's
DifferentialPrivacyServerSideFixedClipping wrapped around FedAvg), R rounds,
over gRPC with server TLS (Flower's legacy server; the clients are threads,
at most 100 per process).

    python flower_dp.py server --port P --clients N --rounds R --dim D --pki DIR --out result.json
    python flower_dp.py clients --port P --clients N --dim D --pki DIR

The server measures its own per-round wall time (from the end of
configure_fit, when every client is connected and sampled, to the end of
aggregate_fit: sending the model, the clients' uploads, clipping, averaging
and noise) and its
process memory (VmRSS once every client is connected, VmHWM at the end).
"""

import argparse
import json
import logging
import multiprocessing
import threading
import time
from pathlib import Path

import numpy as np

import flwr
from flwr.client import NumPyClient, start_client
from flwr.common import ndarrays_to_parameters
from flwr.server import ServerConfig, start_server
from flwr.server.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class TimedDp(DifferentialPrivacyServerSideFixedClipping):
    """Flower's wrapper, unchanged, with a stopwatch around each round."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.round_s: list[float] = []
        self.baseline_kb = 0
        self._t0 = 0.0

    def configure_fit(self, server_round, parameters, client_manager):
        # Sampling waits until every client is connected: start the clock
        # (and take the baseline) once it returns.
        ins = super().configure_fit(server_round, parameters, client_manager)
        if server_round == 1:
            self.baseline_kb = status_kb("VmRSS")
        self._t0 = time.perf_counter()
        return ins

    def aggregate_fit(self, server_round, results, failures):
        out = super().aggregate_fit(server_round, results, failures)
        self.round_s.append(time.perf_counter() - self._t0)
        return out


def pki(args):
    d = Path(args.pki)
    return (d / "ca.pem").read_bytes(), (d / "server.pem").read_bytes(), (d / "server.key").read_bytes()


def server(args):
    ca, cert, key = pki(args)
    initial = [np.zeros(args.dim, dtype=np.float32)]
    fedavg = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=args.clients,
        min_evaluate_clients=0,
        min_available_clients=args.clients,
        initial_parameters=ndarrays_to_parameters(initial),
    )
    strategy = TimedDp(
        fedavg,
        noise_multiplier=args.z,
        clipping_norm=args.clip,
        num_sampled_clients=args.clients,
    )
    t0 = time.perf_counter()
    start_server(
        server_address=f"localhost:{args.port}",
        config=ServerConfig(num_rounds=args.rounds),
        strategy=strategy,
        certificates=(ca, cert, key),
    )
    total = time.perf_counter() - t0
    result = {
        "flwr": flwr.__version__,
        "clients": args.clients,
        "rounds": args.rounds,
        "dim": args.dim,
        "z": args.z,
        "clip": args.clip,
        "round_s": strategy.round_s,
        "mean_round_s": sum(strategy.round_s) / max(len(strategy.round_s), 1),
        "baseline_mb": strategy.baseline_kb / 1024,
        "peak_rss_mb": status_kb("VmHWM") / 1024,
        "total_s": total,
    }
    Path(args.out).write_text(json.dumps(result, indent=1))


class Client(NumPyClient):
    """Returns global + a fixed update (the same vector as fedsec's load generator uses)."""

    def __init__(self, update):
        self.update = update

    def fit(self, parameters, config):
        return [parameters[0] + self.update], 1, {}

    def evaluate(self, parameters, config):
        return 0.0, 1, {}


def clients(args):
    ca, _, _ = pki(args)
    # Same scale as coordinator/examples/loadgen.rs: uniform in ±0.5/√d.
    rng = np.random.default_rng(1)
    s = 0.5 / np.sqrt(args.dim)
    update = rng.uniform(-s, s, args.dim).astype(np.float32)

    def one():
        start_client(
            server_address=f"localhost:{args.port}",
            client=Client(update).to_client(),
            root_certificates=ca,
        )

    def group(k):
        threads = [threading.Thread(target=one, daemon=True) for _ in range(k)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # Python threads share one interpreter lock: past ~100 clients one
    # process cannot even connect them all in reasonable time, so the
    # clients are spread over processes of at most 100 threads each.
    procs = max(1, -(-args.clients // 100))
    sizes = [args.clients // procs + (i < args.clients % procs) for i in range(procs)]
    if procs == 1:
        group(args.clients)
        return
    workers = [multiprocessing.Process(target=group, args=(k,)) for k in sizes]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["server", "clients"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dim", type=int, default=100_000)
    p.add_argument("--z", type=float, default=1.0)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--pki", required=True)
    p.add_argument("--out", default="flower_result.json")
    args = p.parse_args()
    # Flower logs every round at INFO; keep the terminal readable.
    logging.getLogger("flwr").setLevel(logging.WARNING)
    server(args) if args.role == "server" else clients(args)


if __name__ == "__main__":
    main()
