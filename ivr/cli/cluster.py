"""`tongdai cluster up|status|down|restart`: several Asterisk nodes behind Kamailio (docs/cluster.md)."""

from __future__ import annotations

import json
import sys

import click

from ivr.cli.common import fail, load_routing, settings


@click.group()
def cluster() -> None:
    """Cụm nhiều nút Asterisk sau Kamailio, dùng chung một PostgreSQL (docs/cluster.md)."""


@cluster.command("up")
@click.option("--nodes", "count", default=2, show_default=True, help="Số nút Asterisk.")
@click.option("--grace", default=10.0, show_default=True, help="Giây chờ cuộc gọi đang diễn ra khi dừng.")
def cluster_up(count: int, grace: float) -> None:
    """Khởi động Kamailio, các nút Asterisk, bộ điều khiển của từng nút (và PostgreSQL riêng nếu chưa cấu hình)."""
    from ivr.cluster import up as up_mod
    from ivr.server import setup_logging

    s = settings()
    r = load_routing(s.routing_path)
    setup_logging(s, name="cluster")
    try:
        up_mod.up(s, r, count, lambda m: click.echo(m))
    except up_mod.ClusterError as e:
        fail(str(e))


@cluster.command("status")
@click.option("--json", "as_json", is_flag=True, help="In dạng JSON (cho script).")
def cluster_status(as_json: bool) -> None:
    """Kamailio, từng nút: địa chỉ, PID Asterisk và bộ điều khiển, Kamailio coi là khoẻ không, số cuộc gọi."""
    import asyncio

    from ivr.cluster import up as up_mod

    st = asyncio.run(up_mod.status(settings()))
    if as_json:
        click.echo(json.dumps(st, ensure_ascii=False, indent=1))
    elif not st["up"]:
        click.echo("Cụm: không chạy.")
    else:
        k = st["kamailio"]
        click.echo(f"Cụm: đang chạy (PID {st['pid']}), cơ sở dữ liệu {st['database']}.")
        click.echo(f"Kamailio: {'chạy' if k['up'] else 'KHÔNG chạy'} PID {k['pid']}, SIP {k['sip']}"
                   + (f" ({k['error']})" if k["error"] else ""))
        for n in st["nodes"]:
            click.echo(f"  {n['name']}: {n['address']} SIP {n['sip']} ARI {n['ari']} AMI {n['ami']}; "
                       f"Asterisk PID {n['asterisk_pid'] or '—'}; bộ điều khiển PID {n['controller_pid'] or '—'}"
                       f"{'' if n['controller_up'] else ' (không trả lời)'}; "
                       f"{'khoẻ' if n['healthy'] else 'KHÔNG nhận cuộc gọi'}; "
                       f"{n['calls_in_progress'] if n['calls_in_progress'] is not None else '?'} cuộc gọi")
    sys.exit(0 if st["up"] else 3)


@cluster.command("down")
def cluster_down() -> None:
    """Dừng cụm đang chạy (như Ctrl-C trên `cluster up`)."""
    from ivr.cluster import up as up_mod

    try:
        stopped = up_mod.down(settings())
    except up_mod.ClusterError as e:
        fail(str(e))
    click.echo("Đã dừng cụm." if stopped else "Cụm không chạy.")


@cluster.command("restart")
@click.argument("node")
def cluster_restart(node: str) -> None:
    """Khởi động lại Asterisk của một nút (vd. node1); Kamailio đưa nút trở lại khi nút trả lời."""
    from ivr.cluster import up as up_mod

    s = settings()
    r = load_routing(s.routing_path)
    try:
        pid = up_mod.restart_node(s, r, node, lambda m: click.echo(m))
    except up_mod.ClusterError as e:
        fail(str(e))
    click.echo(f"{node}: Asterisk đã chạy lại (PID {pid}).")


@cluster.command("apply")
@click.option("--yes", "-y", is_flag=True, help="Không hỏi lại trước khi ghi.")
def cluster_apply(yes: bool) -> None:
    """Áp dụng routing.yaml lần lượt cho từng nút (như `tongdai apply`), rồi cho Kamailio."""
    from ivr.cli.common import show_warnings
    from ivr.cluster import up as up_mod

    s = settings()
    r = load_routing(s.routing_path)  # an invalid file stops here: no node touched
    show_warnings(r)
    if not yes:
        if not sys.stdin.isatty():
            fail("cần --yes khi không chạy trên terminal", 2)
        click.confirm("Ghi và nạp lại trên mọi nút?", abort=True)
    try:
        ok = up_mod.apply_all(s, r, lambda m: click.echo(m))
    except up_mod.ClusterError as e:
        fail(str(e))
    if not ok:
        fail("routing mới chưa được áp dụng cho mọi nút")


COMMANDS = [cluster]
