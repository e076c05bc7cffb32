"""A whole cluster on one machine: `tongdai cluster up` / `status` / `down` / `restart`.

``up`` runs in the foreground: the database (a private PostgreSQL unless TONGDAI_DATABASE_URL is
set), each node's Asterisk, Kamailio, then a supervised controller per node; it prints
``ready:`` once every controller is up and Kamailio sees every node. Ctrl-C, SIGTERM or
``tongdai cluster down`` (which signals it) stops everything it started, in reverse order.
What it started is in ``$TONGDAI_HOME/cluster/state.json``, which ``status`` reads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from ivr import control, supervise
from ivr.cluster import nodes as nodes_mod
from ivr.cluster.kamailio import Kamailio, KamailioError
from ivr.cluster.postgres import Postgres
from ivr.config import routing as rt
from ivr.config.settings import Settings
from ivr.pbx.asterisk import Layout, PbxError


class ClusterError(RuntimeError):
    """The cluster could not be started (the message says what and why)."""


def state_path(s: Settings) -> Path:
    return s.home / "cluster" / "state.json"


def read_state(s: Settings) -> dict | None:
    try:
        st = json.loads(state_path(s).read_text())
    except (OSError, ValueError):
        return None
    pid = st.get("pid")
    return st if isinstance(pid, int) and _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def _free_port(start: int) -> int:
    for port in range(start, start + 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise ClusterError(f"no free TCP port from {start}")


def database(s: Settings) -> tuple[str, Postgres | None]:
    """The shared database's URL, and the private server started for it (None: configured)."""
    if s.env.get("TONGDAI_DATABASE_URL"):
        return s.database_url, None
    pg = Postgres(s.home / "cluster" / "postgres", _free_port(int(s.env.get("TONGDAI_CLUSTER_PG_PORT") or 55432)))
    try:
        pg.start()
    except RuntimeError as e:
        raise ClusterError(f"private PostgreSQL: {e}") from None
    # While the cluster runs, every other command of this TONGDAI_HOME uses this database
    # (Settings.from_env reads the file); removed when the cluster stops.
    url_file(s).write_text(pg.url + "\n", encoding="utf-8")
    return pg.url, pg


def url_file(s: Settings) -> Path:
    return s.home / "cluster" / "database-url"


def start_node(node: nodes_mod.Node, routing: rt.Routing, say: Callable[[str], None],
               sounds_from: Path | None = None) -> Layout:
    """Render and start a node's Asterisk (a leftover of the same node is replaced)."""
    from ivr.dialplan import render as rd
    from ivr.pbx import preflight
    from ivr.pbx import sounds as prompts_mod

    ns = node.settings
    layout = Layout.for_settings(ns)
    layout.install(log=say)
    layout.prepare()
    # `tongdai hours` writes the cluster's override; every node reads it through this link.
    link = ns.hours_override_path
    if not link.is_symlink():
        link.unlink(missing_ok=True)
        link.symlink_to(cluster_home(node) / "hours-override.json")
    sounds = layout.host(layout.ast("data/sounds/vi"))
    if sounds_from is not None and sounds_from != sounds:
        shutil.copytree(sounds_from, sounds, dirs_exist_ok=True, symlinks=True)  # the same texts: no synthesis again
    texts = Path(ns.env.get("TONGDAI_PROMPTS") or prompts_mod.TEXTS)
    prompts_mod.build(sounds, texts_path=texts, recordings=prompts_mod.recordings_dir(ns.routing_path))
    from ivr.config import credentials as secrets_mod

    sec = secrets_mod.load(ns.secrets_path, list(routing.extensions))
    rd.write(rd.render(routing, ns, sec, layout), layout.etc)
    layout.chown()
    preflight.before_start(layout, replace=True, say=say)
    pid = layout.start()
    say(f"{node.name}: Asterisk PID {pid}, SIP {ns.bind}:{ns.sip_port}, ARI {ns.ari_port}, AMI {ns.ami_port}")
    return layout


def cluster_home(node: nodes_mod.Node) -> Path:
    return node.home.parent.parent


async def wait_healthy(kam: Kamailio, names: set[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if names <= {t.name for t in await asyncio.to_thread(kam.targets) if t.healthy}:
                return True
        except KamailioError:
            pass
        await asyncio.sleep(0.3)
    return False


def up(s: Settings, routing: rt.Routing, count: int, say: Callable[[str], None], *, grace: float = 10) -> None:
    """Start everything, print ``ready:``, run until SIGINT/SIGTERM, stop everything."""
    running = read_state(s)
    if running is not None:
        raise ClusterError(f"a cluster of this TONGDAI_HOME is already up (PID {running['pid']}); "
                           "`tongdai cluster down` first")
    from ivr.records import db as db_mod

    kam = Kamailio(s)
    url, pg = database(s)
    layouts: list[Layout] = []
    try:
        plan = nodes_mod.plan(s, count, url)
        db_mod.upgrade(plan[0].settings)
        first_sounds = None
        for node in plan:
            layouts.append(start_node(node, routing, say, first_sounds))
            first_sounds = layouts[0].host(layouts[0].ast("data/sounds/vi"))
        kam.render(routing, [(n.name, n.address, n.settings.sip_port) for n in plan])
        kam.start()
        kam.load_credentials(routing)
        say(f"Kamailio PID {kam.pid()}, SIP {s.bind}:{s.sip_port}/udp")
        asyncio.run(_supervise(s, plan, kam, url, say, grace))
    except (PbxError, KamailioError, ValueError) as e:
        raise ClusterError(str(e)) from None
    finally:
        kam.stop()
        for layout in layouts:
            layout.stop()
        if pg is not None:
            url_file(s).unlink(missing_ok=True)
            pg.stop()
        state_path(s).unlink(missing_ok=True)
        say("Đã dừng cụm: Kamailio, các nút Asterisk và bộ điều khiển.")


async def _supervise(s: Settings, plan: list[nodes_mod.Node], kam: Kamailio, url: str,
                     say: Callable[[str], None], grace: float) -> None:
    up_now: set[str] = set()
    all_up = asyncio.Event()

    def ready(child: supervise.Child, starts: int) -> None:
        if starts > 1:
            say(f"ready: {child.name} đã khởi động lại (lần {starts - 1}).")
            return
        up_now.add(child.name)
        if len(up_now) == len(plan):
            all_up.set()

    children = [supervise.Child(f"controller-{n.name}", supervise.python("serve", "--grace", f"{grace:g}"),
                                env={**n.env, "PYTHONUNBUFFERED": "1"}, ready="controller ready", on_ready=ready)
                for n in plan]
    sup = supervise.Supervisor(children, grace=grace + 10)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(sup.run())

    def write_state() -> None:
        st = {"pid": os.getpid(), "started_at": dt.datetime.now(dt.timezone.utc).isoformat(),
              "database": "private" if not s.env.get("TONGDAI_DATABASE_URL") else "configured",
              "kamailio": {"pid": kam.pid(), "sip": f"{s.bind}:{s.sip_port}", "ctl": str(kam.ctl)},
              "nodes": [{"name": n.name, "address": n.address, "home": str(n.home),
                         "sip_port": n.settings.sip_port, "ari_port": n.settings.ari_port,
                         "ami_port": n.settings.ami_port, "controller_pid": c.pid}
                        for n, c in zip(plan, children, strict=True)]}
        path = state_path(s)
        tmp = path.with_name(".state.json.tmp")
        tmp.write_text(json.dumps(st, indent=1))
        os.replace(tmp, path)

    try:
        waiter = asyncio.create_task(all_up.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if all_up.is_set() and await wait_healthy(kam, {n.name for n in plan}, 20):
            write_state()
            say(f"ready: cụm {len(plan)} nút nhận cuộc gọi qua Kamailio SIP {s.bind}:{s.sip_port}/udp "
                f"({', '.join(n.name + ' ' + n.address for n in plan)}); `tongdai cluster status` xem trạng thái.")
        elif not stop.is_set():
            say("lỗi: các nút không sẵn sàng trong thời gian chờ; đang dừng.")
            stop.set()
        last = ""
        while not stop.is_set():
            # Controllers restarted by the supervisor get new PIDs: keep state.json true.
            now = json.dumps([c.pid for c in children])
            if now != last and all_up.is_set():
                write_state()
                last = now
            try:
                await asyncio.wait_for(stop.wait(), 1)
            except TimeoutError:
                pass
        for t in (waiter, stopper):
            t.cancel()
    finally:
        say("Đang dừng cụm: các cuộc gọi đang diễn ra được kết thúc trước…")
        await sup.stop()
        await task


async def status(s: Settings) -> dict:
    """What `tongdai cluster status` shows; ``{"up": False}`` when no cluster runs."""
    st = read_state(s)
    if st is None:
        return {"up": False}
    kam = Kamailio(s)
    targets: dict[str, bool] = {}
    kam_error = None
    try:
        targets = {t.name: t.healthy for t in await asyncio.to_thread(kam.targets)}
    except KamailioError as e:
        kam_error = str(e)
    nodes = []
    for n in st["nodes"]:
        ns = Settings.from_env({**s.env, "TONGDAI_HOME": n["home"]})
        layout = Layout.for_settings(ns)
        try:
            ctl = await control.request(Path(n["home"]), "GET", "/status", timeout=3)
        except (ConnectionError, TimeoutError, ValueError):
            ctl = None
        nodes.append({
            "name": n["name"], "address": n["address"], "sip": f"{n['address']}:{n['sip_port']}",
            "ari": f"{n['address']}:{n['ari_port']}", "ami": f"{n['address']}:{n['ami_port']}",
            "asterisk_pid": layout.pid(),
            "controller_pid": (ctl or {}).get("controller", {}).get("pid") or n.get("controller_pid"),
            "controller_up": ctl is not None,
            "healthy": targets.get(n["name"], False),
            "calls_in_progress": len((ctl or {}).get("calls", [])) if ctl else None,
        })
    return {"up": True, "pid": st["pid"], "started_at": st["started_at"], "database": st["database"],
            "kamailio": {"pid": kam.pid(), "up": kam.pid() is not None and kam_error is None,
                         "sip": st["kamailio"]["sip"], "error": kam_error},
            "nodes": nodes}


def down(s: Settings, timeout: float = 60) -> bool:
    """Signal the running `cluster up` and wait until it has stopped everything."""
    st = read_state(s)
    if st is None:
        return False
    os.kill(st["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(st["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(st["pid"]):
        raise ClusterError(f"`cluster up` (PID {st['pid']}) did not stop in {timeout:g} s")
    return True


def restart_node(s: Settings, routing: rt.Routing, name: str, say: Callable[[str], None]) -> int:
    """Start a node's Asterisk again (after a crash, or to take a new configuration); its
    controller, still supervised by `cluster up`, reconnects by itself, and Kamailio's next
    OPTIONS puts the node back in rotation."""
    st = read_state(s)
    if st is None:
        raise ClusterError("no cluster is up for this TONGDAI_HOME")
    names = [n["name"] for n in st["nodes"]]
    if name not in names:
        raise ClusterError(f"no node '{name}' (nodes: {', '.join(names)})")
    # Asterisk's configuration does not name the database: the cluster's URL is enough here.
    node = nodes_mod.plan(s, len(names), s.database_url)[names.index(name)]
    layout = Layout.for_settings(node.settings)
    layout.stop()
    return start_node(node, routing, say).pid() or 0


def apply_all(s: Settings, routing: rt.Routing, say: Callable[[str], None]) -> bool:
    """`tongdai apply` on every node in turn (render, write, reload Asterisk, swap the controller's
    routing), then Kamailio's credentials table (new extensions can register). One node at a
    time: while a node reloads the others take the calls; a node whose controller refuses the
    routing stops the roll (the nodes not reached keep the old one). Returns whether all took it."""
    from ivr.pbx import apply as ap

    st = read_state(s)
    if st is None:
        raise ClusterError("no cluster is up for this TONGDAI_HOME")
    names = [n["name"] for n in st["nodes"]]
    for node in nodes_mod.plan(s, len(names), s.database_url):
        ns = node.settings
        p = ap.plan(ns, routing)
        if p.changed:
            ap.write(ns, p)
            try:
                lines = asyncio.run(ap.reload_asterisk(ns, routing, p.reloads))
            except ConnectionError as e:
                lines = [f"Asterisk không nạp lại được ({e}); cấu hình dùng khi khởi động"]
            for line in lines:
                say(f"{node.name}: Asterisk {line}")
            if p.restart_needed:
                say(f"{node.name}: cần `tongdai cluster restart {node.name}`: {', '.join(p.restart_needed)}")
        else:
            say(f"{node.name}: cấu hình Asterisk không thay đổi.")
        try:
            res = asyncio.run(ap.reload_controller(ns, ns.routing_path))
        except ConnectionError:
            say(f"{node.name}: bộ điều khiển không chạy; routing mới dùng khi khởi động.")
            continue
        if not res.get("ok"):
            for error in res.get("errors", []):
                say(f"{node.name}: {error}")
            say(f"{node.name}: bộ điều khiển từ chối routing mới; dừng, các nút sau giữ routing cũ.")
            return False
        say(f"{node.name}: bộ điều khiển đã nạp routing mới ({res['branches']} nhánh, {res['extensions']} máy lẻ).")
    try:
        Kamailio(s).load_credentials(routing)
    except KamailioError as e:
        say(f"Kamailio: {e}")
        return False
    say("Kamailio: bảng mật khẩu máy bàn đã cập nhật.")
    return True
