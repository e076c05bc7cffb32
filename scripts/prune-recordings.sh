#!/usr/bin/env bash
# Recordings retention for cron: delete voice-complaint recordings older than N days, except
# those of cases not closed yet (and note the deletion in each case's history).
#
#   scripts/prune-recordings.sh [DAYS]   (default: $TONGDAI_RECORDINGS_KEEP_DAYS, else 365)
#
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
