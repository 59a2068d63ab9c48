"""nginx with deploy/nginx-duoduel.conf in front of duoduel processes on loopback, from a directory of its own.

Shared by bench/relay.py (--proxy nginx) and tests/test_deploy.py, so that both run the deploy file as it is: only
its per-process lines (one `server` line and one `location /p/NAME/` block for each process, and its unix socket's
path), its listener's address and its certificate's paths are changed. Never the system's nginx service: nginx runs in the foreground with a main
configuration of its own, its pid, logs and temporary files in the given directory.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

SITE = Path(__file__).resolve().parent.parent / "deploy" / "nginx-duoduel.conf"
# The site file's lines for its two example processes, 8081 and 8082: each kept once per real process.
PER_PROCESS = (r"^( *)server unix:{socket};\n", r"^( *)location /p/{name}/ \{{\n.*?^\1\}}\n")
SOCKET = "/run/duoduel/{name}/duoduel.sock"  # where the deploy's process NAME listens


def binary() -> str:
    """The nginx executable; Debian installs it outside a user's PATH."""
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise FileNotFoundError("nginx is missing: apt-get install nginx (.ci/run does)")
    return found


def site_config(processes: dict[str, Path], listen: int, cert: Path, key: Path, source: Path = SITE) -> str:
    """The deploy site for duoduel processes {name: unix socket}, listening with TLS on 127.0.0.1:listen."""
    site = source.read_text()
    for pattern in PER_PROCESS:
        first, second = (re.search(pattern.format(name=name, socket=re.escape(SOCKET.format(name=name))), site,
                                   re.MULTILINE | re.DOTALL) for name in ("8081", "8082"))
        if first is None or second is None or second.start() < first.end():
            raise ValueError(f"{source}: expected the example processes 8081 and 8082 in this form: {pattern}")
        example = first[0].replace(SOCKET.format(name="8081"), "{socket}").replace("8081", "{name}")
        block = "".join(example.replace("{socket}", str(socket)).replace("{name}", name)
                        for name, socket in processes.items())
        site = site[:first.start()] + block + site[first.end():second.start()] + site[second.end():]
    for placeholder, value in (("listen 443", f"listen 127.0.0.1:{listen}"),
                               ("/etc/duoduel/cert.pem", cert), ("/etc/duoduel/key.pem", key)):
        if placeholder not in site:
            raise ValueError(f"{source}: {placeholder!r} is gone")
        site = site.replace(placeholder, str(value))
    return site


def write_config(directory: Path, site: str, workers: int = 1, master: bool = True) -> Path:
    """site inside a minimal nginx.conf of its own in directory (pid, logs, temporary files there); its path.

    master=False: one process that accepts and serves itself (nginx's master_process off), e.g. under valgrind.
    """
    (directory / "duoduel.conf").write_text(site)
    main = directory / "nginx.conf"
    main.write_text(f"""
daemon off;
master_process {'on' if master else 'off'};
user root;
worker_processes {workers};
worker_rlimit_nofile 65536;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/duoduel.conf;
}}
""")
    return main


def workers(master: int) -> list[int]:
    """The worker processes of the nginx master process with this PID."""
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
