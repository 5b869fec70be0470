"""A minimal fedsec participant written from the .proto alone (grpcio).

Goes through one round over mutual TLS: Register, GetTask (polling as told),
GetModel (digest checked), SubmitUpdate with fixed-size chunks; prints one
JSON line describing what it did. Used by coordinator/tests/python_client.rs,
which generates the stubs from proto/ with grpcio-tools first.

Usage: fedsec_client.py --stubs DIR --endpoint HOST:PORT --ca F --cert F
       --key F --job JOB [--chunk-bytes N] [--timeout S]
"""

import argparse
import hashlib
import json
import struct
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--stubs", required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--job", required=True)
    p.add_argument("--chunk-bytes", type=int, default=64 * 1024)
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args()
    sys.path.insert(0, a.stubs)

    import grpc
    from fedsec.v1 import common_pb2, coordinator_pb2, coordinator_pb2_grpc

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(
        root_certificates=read(a.ca),
        private_key=read(a.key),
        certificate_chain=read(a.cert),
    )
    channel = grpc.secure_channel(a.endpoint, creds)
    stub = coordinator_pb2_grpc.CoordinatorStub(channel)
    deadline = time.monotonic() + a.timeout

    reg = stub.Register(
        coordinator_pb2.RegisterRequest(software="fedsec-python-test/1"), timeout=10
    )

    # Poll for a task at the interval the coordinator suggests.
    while True:
        r = stub.GetTask(coordinator_pb2.GetTaskRequest(job_id=a.job), timeout=10)
        kind = r.WhichOneof("outcome")
        if kind == "task":
            task = r.task
            break
        if kind == "finished":
            raise SystemExit(f"job finished before a task: {r.finished}")
        if time.monotonic() > deadline:
            raise SystemExit("no task before the timeout")
        time.sleep(max(r.retry.retry_after_ms, 10) / 1000.0)

    # Download the base version; check the digest and the size.
    header, payload = None, bytearray()
    for msg in stub.GetModel(
        coordinator_pb2.GetModelRequest(job_id=a.job, version=task.base_version),
        timeout=30,
    ):
        part = msg.WhichOneof("part")
        if part == "header":
            header = msg.header
        else:
            payload += msg.chunk.data
    assert header is not None, "no model header"
    assert len(payload) == 4 * header.num_params, "model size"
    assert hashlib.sha256(payload).digest() == header.sha256, "model digest"
    d = header.num_params

    # A deterministic update of norm below the clip norm.
    update = struct.pack(f"<{d}f", *[((i % 5) - 2) * 1e-4 for i in range(d)])
    digest = hashlib.sha256(update).digest()
    step = a.chunk_bytes - a.chunk_bytes % 4
    chunks = [update[i : i + step] for i in range(0, len(update), step)]

    def messages():
        yield coordinator_pb2.SubmitUpdateRequest(
            header=coordinator_pb2.UpdateHeader(
                job_id=task.job_id,
                round=task.round,
                attempt=task.attempt,
                base_version=task.base_version,
                nonce=b"python-client-nonce",
                num_params=d,
                within_clip=True,
            )
        )
        for c in chunks:
            yield coordinator_pb2.SubmitUpdateRequest(
                chunk=common_pb2.TensorChunk(data=c)
            )
        yield coordinator_pb2.SubmitUpdateRequest(
            trailer=coordinator_pb2.UpdateTrailer(sha256=digest)
        )

    resp = stub.SubmitUpdate(messages(), timeout=30)
    print(
        json.dumps(
            {
                "client_id": reg.client_id,
                "tenant_id": reg.tenant_id,
                "round": task.round,
                "base_version": task.base_version,
                "num_params": d,
                "chunks": len(chunks),
                "chunk_bytes": step,
                "newly_accepted": resp.newly_accepted,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
