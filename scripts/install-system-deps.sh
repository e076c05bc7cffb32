#!/usr/bin/env bash
# Install the Debian packages tongdai needs, if any is missing:
#   debootstrap (the Asterisk sandbox), sip-tester (SIPp: test calls and desk phones),
#   espeak-ng + sox (Vietnamese voice prompts), postgresql (the test suite starts a private
#   PostgreSQL server of its own: nothing is configured or started system-wide for it),
#   sqlite3 (the export benchmark's reference), Pango, HarfBuzz-subset and DejaVu fonts
#   (WeasyPrint: the monthly report as PDF), poppler-utils (tests turn the report's PDF into an image),
#   chromium (the console's browser test drives Debian's Chromium through Playwright for Python,
#   pinned in pyproject.toml; Playwright never downloads a browser of its own here),
#   kamailio (the cluster's SIP edge: dispatcher, registrar; docs/cluster.md — its Debian service is
#   not used: `tongdai cluster up` runs its own instance with its own configuration).
set -euo pipefail
have_postgres() {
  local d
  for d in "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin; do
    [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && return 0
  done
  return 1
}
need=()
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v sipp        >/dev/null 2>&1 || need+=(sip-tester)
command -v espeak-ng   >/dev/null 2>&1 || need+=(espeak-ng)
command -v sox         >/dev/null 2>&1 || need+=(sox)
have_postgres                            || need+=(postgresql)
command -v sqlite3     >/dev/null 2>&1 || need+=(sqlite3)
command -v pdftoppm    >/dev/null 2>&1 || need+=(poppler-utils)
has_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
has_lib libpango-1.0.so.0      || need+=(libpango-1.0-0)
has_lib libpangoft2-1.0.so.0   || need+=(libpangoft2-1.0-0)
has_lib libharfbuzz-subset.so.0 || need+=(libharfbuzz-subset0)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
[ -x /usr/bin/chromium ]                || need+=(chromium)
{ command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ]; } || need+=(kamailio)
[ ${#need[@]} -eq 0 ] && exit 0
echo "Cài đặt gói hệ thống còn thiếu: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "lỗi: cần quyền root để cài ${need[*]} (apt-get install ${need[*]})" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
