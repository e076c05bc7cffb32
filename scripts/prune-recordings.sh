#!/usr/bin/env bash
# Recordings retention for cron: delete voice-complaint recordings older than N days (noted in
# each case's history) and conversation recordings older than routing.yaml's
# recording.retention_days (the call's row keeps the path and when it was deleted), except those
# of cases not closed yet or flagged for the inspection team.
#
#   scripts/prune-recordings.sh [DAYS]   (complaints; default: $TONGDAI_RECORDINGS_KEEP_DAYS, else 365)
#
# scripts/nightly-export.sh runs it every night after the exports; or on its own:
# crontab:
#   30 2 * * 0  cd /opt/tongdai && scripts/prune-recordings.sh >>var/log/retention.log 2>&1
set -euo pipefail
cd "$(dirname "$0")/.."
# TONGDAI: the command to run (default: the repo's .venv, else tongdai on PATH).
read -ra TONGDAI <<<"${TONGDAI:-$( [ -x .venv/bin/tongdai ] && echo .venv/bin/tongdai || echo tongdai )}"
if [ $# -gt 0 ]; then
  exec "${TONGDAI[@]}" recordings prune --days "$1"
fi
exec "${TONGDAI[@]}" recordings prune
