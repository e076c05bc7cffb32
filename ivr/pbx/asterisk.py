"""The Asterisk process: a Debian-sid chroot sandbox or a native installation.

Both run our own Asterisk instance with ``-C <etc>/asterisk.conf`` and its own directories, so
several instances (make run, a test run) can live side by side on different ports.

Sandbox: ``debootstrap --variant=minbase --include=asterisk,asterisk-modules sid`` into a cache
directory outside the repository (reused on later runs). The instance lives inside the chroot
under ``/srv/tongdai/<instance id>``; ``$TONGDAI_HOME/asterisk`` links to it from the host.
Native: the instance lives in ``$TONGDAI_HOME/asterisk`` and the installed binary runs it.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ivr.config.settings import Settings

# Asterisk's own record of every hotline call (cel_custom), in its log directory: the controller
# reads it to log the calls it never saw (ivr/pbx/cel.py).
CEL_FILE = "log/tongdai-calls.jsonl"
INSTANCE_DIRS = ("etc", "run", "log", "lib", "lib/keys", "spool", "spool/recording", "data", "data/sounds", "data/moh")


class PbxError(Exception):
    """Asterisk could not be provisioned, started or reached."""


@dataclass(frozen=True)
class Layout:
    """Where an instance's files are, as the host sees them and as Asterisk sees them."""

    settings: Settings
    chroot: Path | None  # None for native
    root: str  # instance root as Asterisk sees it

    @classmethod
    def for_settings(cls, s: Settings) -> Layout:
        if s.asterisk_mode == "sandbox":
            return cls(s, s.sandbox_dir, f"/srv/tongdai/{s.instance_id}")
        return cls(s, None, str(s.home / "asterisk"))

    def host(self, ast_path: str) -> Path:
        """A path Asterisk uses, as seen from the host."""
        if self.chroot is None:
            return Path(ast_path)
        return self.chroot / ast_path.lstrip("/")

    def ast(self, name: str) -> str:
        return f"{self.root}/{name}"

    @property
    def etc(self) -> Path:
        return self.host(self.ast("etc"))

    @property
    def log_file(self) -> Path:
        return self.host(self.ast("log")) / "messages.log"

    @property
    def cel_file(self) -> Path:
        return self.host(self.ast(CEL_FILE))

    @property
    def pid_file(self) -> Path:
        return self.settings.home / "asterisk.pid"

    @property
    def distro_datadir(self) -> str:
        return self.settings.env.get("TONGDAI_ASTERISK_DATADIR") or "/usr/share/asterisk"

    def moddir(self) -> str:
        """The modules directory as Asterisk sees it."""
        if self.settings.asterisk_moddir:
            return self.settings.asterisk_moddir
        base = str(self.chroot) if self.chroot else ""
        for pattern in ("/usr/lib/*/asterisk/modules", "/usr/lib/asterisk/modules", "/usr/lib64/asterisk/modules"):
            found = sorted(glob.glob(base + pattern))
            if found:
                return found[0][len(base):]
        return "/usr/lib/asterisk/modules"

    def directories(self) -> dict[str, str]:
        """asterisk.conf's [directories], as Asterisk sees them."""
        return {
            "astetcdir": self.ast("etc"),
            "astmoddir": self.moddir(),
            "astvarlibdir": self.ast("lib"),
            "astdbdir": self.ast("lib"),
            "astkeydir": self.ast("lib"),
            "astdatadir": self.ast("data"),
            "astagidir": self.ast("data") + "/agi-bin",
            "astspooldir": self.ast("spool"),
            "astrundir": self.ast("run"),
            "astlogdir": self.ast("log"),
            "astsbindir": "/usr/sbin",
        }

    def run_user(self) -> str | None:
        """The user Asterisk drops privileges to (the chroot's or the system's `asterisk`)."""
        if "TONGDAI_ASTERISK_RUNUSER" in self.settings.env:
            return self.settings.env["TONGDAI_ASTERISK_RUNUSER"] or None
        if self.chroot is not None:
            return "asterisk"
        if os.geteuid() != 0:
            return None
        try:
            import pwd

            pwd.getpwnam("asterisk")
            return "asterisk"
        except KeyError:
            return None

    # ------------------------------------------------------------------ commands

    def _prefix(self) -> list[str]:
        if self.chroot is not None:
            return ["chroot", str(self.chroot), "asterisk"]
        return [self.settings.asterisk_bin]

    def start_command(self) -> list[str]:
        return self._prefix() + ["-f", "-n", "-C", self.ast("etc") + "/asterisk.conf"]

    def rx(self, command: str, timeout: float = 15) -> str:
        """Run an Asterisk CLI command against this instance; raise PbxError on failure."""
        cmd = self._prefix() + ["-C", self.ast("etc") + "/asterisk.conf", "-rx", command]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PbxError(f"asterisk -rx '{command}' timed out") from None
        except FileNotFoundError as e:
            raise PbxError(f"cannot run {cmd[0]}: {e}") from None
        if p.returncode != 0:
            raise PbxError(f"asterisk -rx '{command}' failed: {(p.stderr or p.stdout).strip()}")
        return p.stdout

    # ------------------------------------------------------------------ provisioning

    def installed(self) -> bool:
        if self.chroot is not None:
            return (self.chroot / "usr/sbin/asterisk").exists()
        return shutil.which(self.settings.asterisk_bin) is not None

    def install(self, log=print) -> None:
        """Provision the sandbox chroot if it is not there yet (a no-op for native)."""
        if self.installed():
            return
        if self.chroot is None:
            raise PbxError(
                f"TONGDAI_ASTERISK=native but '{self.settings.asterisk_bin}' is not installed; "
                "install Asterisk or use the sandbox (TONGDAI_ASTERISK=sandbox)"
            )
        if os.geteuid() != 0:
            raise PbxError("building the Asterisk sandbox needs root (debootstrap and chroot)")
        if not shutil.which("debootstrap"):
            log("cài đặt debootstrap…")
            subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], check=True,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        tmp = self.chroot.with_name(self.chroot.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        log(f"tạo Asterisk sandbox (Debian sid) tại {self.chroot} — khoảng một phút…")
        mirror = self.settings.env.get("TONGDAI_DEBIAN_MIRROR")
        cmd = ["debootstrap", "--variant=minbase", "--include=asterisk,asterisk-modules", "sid", str(tmp)]
        if mirror:
            cmd.append(mirror)
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise PbxError("debootstrap failed:\n" + (p.stdout + p.stderr)[-3000:])
        # The chroot has no /etc/hosts; without one the first call hits getaddrinfo errors.
        shutil.copyfile("/etc/hosts", tmp / "etc/hosts")
        os.replace(tmp, self.chroot)

    def prepare(self) -> None:
        """Create the instance directories (owned by Asterisk's run user)."""
        root = self.host(self.root)
        for d in INSTANCE_DIRS:
            (root / d).mkdir(parents=True, exist_ok=True)
        # Recordings are personal data, and Asterisk writes them with its umask (0644) while a
        # call lasts: only Asterisk and its group (the controller, which moves them) get in.
        os.chmod(root / "spool/recording", 0o770)
        self.settings.home.mkdir(parents=True, exist_ok=True)
        if self.chroot is not None:
            link = self.settings.home / "asterisk"
            if not link.is_symlink() or os.readlink(link) != str(root):
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(root)
        # The distribution's data dir (documentation, rest-api, keys, ...) is linked in, so that
        # our own sounds/ and moh/ can sit beside it. Inside a chroot the links are chroot paths.
        distro = self.host(self.distro_datadir)
        if distro.is_dir():
            for entry in sorted(distro.iterdir()):
                if entry.name in ("sounds", "moh"):
                    continue
                link = root / "data" / entry.name
                if not link.is_symlink() and not link.exists():
                    link.symlink_to(f"{self.distro_datadir}/{entry.name}")
            for lang in sorted((distro / "sounds").glob("*")) if (distro / "sounds").is_dir() else []:
                link = root / "data/sounds" / lang.name
                if not link.is_symlink() and not link.exists():
                    link.symlink_to(f"{self.distro_datadir}/sounds/{lang.name}")
        # The hold music must be there when Asterisk boots: a music class without files is
        # disabled at load, and `moh reload` does not bring it back.
        from ivr.pbx import sounds

        try:
            sounds.build_moh(root / "data/moh")
        except RuntimeError:  # no sox: held callers hear silence between the prompts
            pass
        self.chown()

    def chown(self) -> None:
        user = self.run_user()
        if not user or os.geteuid() != 0:
            return
        if self.chroot is not None:
            # The chroot's asterisk user is not the host's: chown from inside.
            subprocess.run(["chroot", str(self.chroot), "chown", "-R", f"{user}:", self.root], check=True)
        else:
            subprocess.run(["chown", "-R", f"{user}:", self.root], check=True)

    # ------------------------------------------------------------------ process

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        return pid if any(b"asterisk" in c for c in cmdline) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 60) -> int:
        """Start Asterisk in the background and wait until it is fully booted; return its PID."""
        pid = self.pid()
        if pid:
            return pid
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        console = open(self.settings.home / "asterisk.console.log", "ab")
        proc = subprocess.Popen(
            self.start_command(), stdin=subprocess.DEVNULL, stdout=console, stderr=console,
            start_new_session=True,
        )
        console.close()
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise PbxError(f"Asterisk exited at start-up (code {proc.returncode}):\n{self.log_tail()}")
            try:
                self.rx("core waitfullybooted", timeout=5)
                return proc.pid
            except PbxError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise PbxError(f"Asterisk did not finish booting in {timeout:g} s:\n{self.log_tail()}") from None
                time.sleep(0.2)

    def _recorded_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 15) -> bool:
        """Stop this instance by PID; return whether it was running."""
        pid = self.pid()
        if pid is None:
            # Killed a moment ago (SIGKILL): its command line is already gone but it may still
            # hold its sockets for a few ms; a new Asterisk started meanwhile would see its
            # control socket and refuse to start ("Asterisk already running").
            dying = self._recorded_pid()
            deadline = time.monotonic() + timeout
            while dying and _alive(dying) and time.monotonic() < deadline:
                time.sleep(0.02)
            self.pid_file.unlink(missing_ok=True)
            return False
        terminate(pid, timeout)
        self.pid_file.unlink(missing_ok=True)
        return True

    def version(self) -> str | None:
        try:
            out = self.rx("core show version", timeout=5).strip()
        except PbxError:
            return None
        return out.split(" built ")[0] if out else None

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for f in (self.settings.home / "asterisk.console.log", self.log_file):
            try:
                out += f.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                pass
        return "\n".join(out)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs. A killed multi-threaded process shows as a zombie as soon as
    its main thread is gone, but keeps its sockets (Asterisk's control socket, its ports) until
    its last thread has exited: only then is it gone."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            zombie = f.read().split(") ")[-1][:1] == "Z"
        return not zombie or len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def terminate(pid: int, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; return once it is gone (all its threads)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.02)
