#!/usr/bin/env bash
# Install (or reuse) the browser that checks the HTML reports (issue 15, item 3):
#   chromium   Debian's chromium package (apt-get, only when missing)
#
# tests/integration/test_backtest_waterflow.py and tests/integration/test_demo.py open the
# reports of `edgemodel backtest --report` and `edgemodel demo` in headless Chromium
# (tests/browser.py), take a screenshot and check the page ran without a script error.
#
# Usage: hack/browser-tools.sh   install chromium when missing, print its path
set -euo pipefail

as_root() { if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi; }
log() { printf '[browser-tools] %s\n' "$*" >&2; }

if ! command -v chromium >/dev/null; then
  log "installing Debian's chromium package (apt-get)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
# The Debian wrapper script prints a shell warning on some kernels; the version line is the last.
log "$(chromium --version 2>/dev/null | tail -n 1)"
command -v chromium
