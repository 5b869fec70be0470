"""A minimal fedsec participant written from the .proto alone (grpcio).

Goes through one round over mutual TLS: Register, GetTask (polling as told),
GetModel (digest checked), SubmitUpdate with fixed-size chunks, then the
committed version's round history (GetRoundHistory, hash chain checked); prints one
JSON line describing what it did. Used by coordinator/tests/python_client.rs,
which generates the stubs from proto/ with grpcio-tools first.

With --token-file (coordinators with [auth.tokens]) every call carries
"authorization: Bearer <token>" through grpcio's call credentials, the file
re-read for each call (so a refreshed token is picked up); the script first
checks that a call without the token is refused with UNAUTHENTICATED.

Usage: fedsec_client.py --stubs DIR --endpoint HOST:PORT --ca F --cert F
       --key F --job JOB [--chunk-bytes N] [--timeout S] [--token-file F]
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
    p.add_argument("--token-file")
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
    refused_without_token = None
    if a.token_file:
        # Without the token: the coordinator must refuse the call.
        bare = coordinator_pb2_grpc.CoordinatorStub(
            grpc.secure_channel(a.endpoint, creds)
        )
        try:
            bare.Register(coordinator_pb2.RegisterRequest(software="x"), timeout=10)
            refused_without_token = False
        except grpc.RpcError as e:
            refused_without_token = e.code() == grpc.StatusCode.UNAUTHENTICATED

        class TokenFile(grpc.AuthMetadataPlugin):
            """The token of a file, read again for every call."""

            def __call__(self, context, callback):
                try:
                    token = read(a.token_file).decode("ascii").strip()
                    callback((("authorization", "Bearer " + token),), None)
                except Exception as e:  # reported to grpcio, which fails the call
                    callback((), e)

        creds = grpc.composite_channel_credentials(
            creds, grpc.metadata_call_credentials(TokenFile())
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

    # Once the round is committed, the current version's receipt names its
    # round history (history_rounds, history_sha256): fetch it page by page
    # with GetRoundHistory and check the hash chain documented in
    # common.proto, written here from that comment alone.
    while True:
        first = stub.GetRoundHistory(
            coordinator_pb2.GetRoundHistoryRequest(
                job_id=a.job, first_round=1, max_rounds=1
            ),
            timeout=10,
        )
        if first.rounds_committed >= task.round:
            break
        if time.monotonic() > deadline:
            raise SystemExit("the round was not committed before the timeout")
        time.sleep(0.05)
    current = None
    for msg in stub.GetModel(
        coordinator_pb2.GetModelRequest(job_id=a.job, version=0), timeout=30
    ):
        if msg.WhichOneof("part") == "header":
            current = msg.header
    receipt = current.receipt
    charges = []
    while len(charges) < receipt.history_rounds:
        page = stub.GetRoundHistory(
            coordinator_pb2.GetRoundHistoryRequest(
                job_id=a.job, first_round=len(charges) + 1, max_rounds=0
            ),
            timeout=10,
        )
        assert page.rounds, "the history ends before the receipt's rounds"
        charges.extend(page.rounds)
    chain = hashlib.sha256(b"fedsec.v1 round history").digest()
    for i, c in enumerate(charges[: receipt.history_rounds]):
        assert c.round == i + 1, "rounds out of order"
        enc = struct.pack(
            "<Q6dq",
            c.round,
            c.sampling_rate,
            c.noise_multiplier,
            c.clip_norm,
            c.sensitivity,
            c.count_stddev,
            c.expected_cohort,
            c.committed_unix_ms,
        )
        chain = hashlib.sha256(chain + enc).digest()

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
                "history_rounds": receipt.history_rounds,
                "history_digest_ok": chain == receipt.history_sha256,
                "inline_rounds_match": list(receipt.rounds) == charges,
                "refused_without_token": refused_without_token,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
