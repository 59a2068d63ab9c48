#!/usr/bin/env python3
"""CPU per TLS 1.3 record of an audio frame's size, encrypted by one end and decrypted by the other, per cipher suite.

usage: python bench/tls_record.py [--bytes 122] [--records 200000] [--rounds 3] [--cpu 1]

A relayed frame is one record from the sender (decrypted where TLS ends) and one to the receiver (encrypted there),
so this is OpenSSL's share of a frame, whoever ends TLS (nginx, or duoduel through Python's ssl module), plus the
Python calls that drive two SSLObjects over memory BIOs, the same for every suite. Python's ssl module cannot choose
TLS 1.3 suites, so each suite runs in a child process whose OpenSSL configuration (OPENSSL_CONF) allows it alone;
the suites alternate, --rounds times, and the medians are printed as JSON with whether the CPU has AES-NI.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
ONE_SUITE = """openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = {suite}
"""


def connected_pair(cert: Path, key: Path) -> tuple[ssl.SSLObject, ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    """A client and a server SSLObject after their handshake, with the client's outgoing and the server's incoming BIO."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=cert)
    to_server, to_client, from_client, from_server = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(to_client, to_server, server_hostname="localhost")
    server = server_context.wrap_bio(from_client, from_server, server_side=True)
    for _ in range(10):
        for end in (client, server):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
        from_client.write(to_server.read())
        to_client.write(from_server.read())
    return client, server, to_server, from_client


def measure(size: int, records: int, cert: Path, key: Path) -> dict:
    """CPU microseconds per record: the client encrypts size bytes, the server decrypts them."""
    client, server, to_server, from_client = connected_pair(cert, key)
    frame = os.urandom(size)

    def send(count: int) -> None:
        for _ in range(count):
            client.write(frame)
            from_client.write(to_server.read())
            server.read(65536)

    send(1000)  # warm up
    start = time.process_time()
    send(records)
    return {"suite": client.cipher()[0], "us_per_record": round((time.process_time() - start) / records * 1e6, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bytes", type=int, default=122, help="plaintext per record (default: a 120-byte frame and its 2-byte WebSocket header)")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", default="1", help="core to pin to (default 1)")
    parser.add_argument("--child", metavar="CERT_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        cert = Path(args.child)
        print(json.dumps(measure(args.bytes, args.records, cert / "cert.pem", cert / "key.pem")))
        return
    with tempfile.TemporaryDirectory(prefix="tls-record-") as scratch:
        directory = Path(scratch)
        subprocess.run([str(ROOT / "gen_cert.sh"), str(directory)], check=True, capture_output=True)
        runs: dict[str, list[float]] = {suite: [] for suite in SUITES}
        for _ in range(args.rounds):
            for suite in SUITES:
                conf = directory / f"{suite}.cnf"
                conf.write_text(ONE_SUITE.format(suite=suite))
                child = subprocess.run(
                    ["taskset", "-c", args.cpu, sys.executable, __file__, "--child", str(directory),
                     "--bytes", str(args.bytes), "--records", str(args.records)],
                    env={**os.environ, "OPENSSL_CONF": str(conf)}, capture_output=True, text=True, check=True)
                result = json.loads(child.stdout)
                if result["suite"] != suite:
                    sys.exit(f"tls_record.py: asked OpenSSL for {suite} alone and got {result['suite']}")
                runs[suite].append(result["us_per_record"])
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    print(json.dumps({
        "bytes": args.bytes, "records": args.records, "rounds": args.rounds, "openssl": ssl.OPENSSL_VERSION,
        "cpu_aes_ni": "aes" in flags, "cpu_vaes": "vaes" in flags,
        "us_per_record_median": {suite: statistics.median(values) for suite, values in runs.items()},
        "runs": runs, "load_average": [round(x, 2) for x in os.getloadavg()],
    }, indent=1))


if __name__ == "__main__":
    main()
