"""A throwaway Dovecot IMAP server on loopback for the tests: one user, Maildir, plain IMAP and
IMAPS (self-signed certificate), started from its own config file without systemd.

As root, Dovecot runs as `nobody` (it refuses nothing as root, but the mail processes must
own the Maildir). It accepts connections before it accepts logins, so `start` waits for the
`* OK` greeting.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD = "support", "support-password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return cert, key


@dataclass
class Dovecot:
    directory: Path
    port: int
    ssl_port: int
    cert: Path

    @property
    def maildir(self) -> Path:
        return self.directory / "home" / USER / "Maildir"

    def _runas(self) -> list[str]:
        return ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []

    def start(self) -> None:
        # DEVNULL, not a pipe: the daemon keeps its inherited descriptors, and a pipe would never close.
        subprocess.run([*self._runas(), "dovecot", "-c", str(self.directory / "dovecot.conf")], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError("Dovecot did not greet")

    def pid(self) -> int | None:
        try:
            return int((self.directory / "run" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().split()[2]
            except OSError:
                break
            if state == "Z":  # a zombie is gone for our purposes
                break
            time.sleep(0.05)
        (self.directory / "run" / "master.pid").unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_dovecot() -> Dovecot:
    if shutil.which("dovecot") is None:
        raise RuntimeError("Dovecot not found: run `bash scripts/test.sh`, which installs dovecot-imapd.")
    directory = Path(tempfile.mkdtemp(prefix="cw-dovecot-"))
    os.chmod(directory, 0o755)
    nobody = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    uid, gid = nobody.pw_uid, nobody.pw_gid
    for sub in ("run", "home", f"home/{USER}", "log"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    cert, key = _make_cert(directory)
    (directory / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{directory}/home/{USER}\n")
    port, ssl_port = _free_port(), _free_port()
    user = nobody.pw_name
    (directory / "dovecot.conf").write_text(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {directory}/run
state_dir = {directory}/run
log_path = {directory}/log/dovecot.log
default_internal_user = {user}
default_login_user = {user}
default_internal_group = {grp.getgrgid(gid).gr_name}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {directory}/passwd
}}
userdb {{
  driver = passwd-file
  args = {directory}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ssl_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-urlauth-login {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    user = {user}
  }}
  unix_listener stats-writer {{
    user = {user}
  }}
}}
""")
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(directory)], check=True)
    server = Dovecot(directory, port, ssl_port, cert)
    server.start()
    return server
