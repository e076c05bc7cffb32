"""`tongdai`: the operator's command line (also `python -m ivr`).

One module per command group; each lists its commands in ``COMMANDS``. What operators and staff
read is Vietnamese; logs and code stay English.
"""

from __future__ import annotations

import click

from ivr.cli import cases, config, pbx, records, service, users, volunteers, web, zalo


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Tổng đài hỗ trợ công tác CCHC — công cụ cho người vận hành."""


for _group in (config, pbx, cases, service, records, zalo, volunteers, users, web):
    for _command in _group.COMMANDS:
        main.add_command(_command)
