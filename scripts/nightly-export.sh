#!/usr/bin/env bash
# Nightly export for cron: yesterday's calls, cases and survey answers into dated files, then
# the recordings' retention (scripts/prune-recordings.sh: complaints and conversations).
#
#   scripts/nightly-export.sh [DIR] [FORMAT]     (defaults: $TONGDAI_HOME/exports, csv)
#
# crontab (as the user that runs tongdai; TONGDAI_HOME etc. as for the service):
#   15 0 * * *  cd /opt/tongdai && scripts/nightly-export.sh >>var/log/exports.log 2>&1
# Writes DIR/YYYY/MM/calls-YYYY-MM-DD.csv (and cases-, surveys-). Each file appears complete
# or not at all (tongdai export writes to a temporary name first). Exit code: the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# TONGDAI: the command to run (default: the repo's .venv, else tongdai on PATH).
read -ra TONGDAI <<<"${TONGDAI:-$( [ -x .venv/bin/tongdai ] && echo .venv/bin/tongdai || echo tongdai )}"
HOME_DIR="${TONGDAI_HOME:-$PWD/var}"
DIR="${1:-$HOME_DIR/exports}"
FORMAT="${2:-csv}"
# "Yesterday" in the hotline's time zone, whatever the server's.
DAY="$(TZ=Asia/Ho_Chi_Minh date -d yesterday +%Y-%m-%d)"
OUT="$DIR/${DAY:0:4}/${DAY:5:2}"
mkdir -p "$OUT"
rc=0
for table in calls cases surveys; do
  if ! "${TONGDAI[@]}" export "$table" --from "$DAY" --to "$DAY" --format "$FORMAT" --out "$OUT/$table-$DAY.$FORMAT"; then
    rc=1
  fi
done
# After the exports, so that the night's files still list recordings deleted now.
if ! scripts/prune-recordings.sh; then
  rc=1
fi
exit "$rc"
