#!/usr/bin/env bash
# What `make test` needs beyond the Python virtualenv, installed when missing:
#   * Debian's chromium and chromium-driver (the browser test; never a downloaded browser) and
#     prometheus (its promtool checks the alert rules), with apt-get as root, or `sudo -n` when
#     that works; otherwise stop with the one command to run;
#   * the Node.js clients' packages (`npm ci` in clients/node, when package-lock.json changed).
# `make run` needs none of this.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'make test: %s\n' "$*"; }
CHROMIUM=${CHROMIUM_BINARY:-/usr/bin/chromium}
CHROMEDRIVER=${CHROMEDRIVER_BINARY:-/usr/bin/chromedriver}
PKGS=()
if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then PKGS+=(chromium chromium-driver); fi
if ! command -v promtool >/dev/null 2>&1; then PKGS+=(prometheus); fi

if [ ${#PKGS[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    AS=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    AS=(sudo -n)
  else
    say "the tests need Debian's ${PKGS[*]}: run 'sudo apt-get install -y ${PKGS[*]}' and then 'make test' again" >&2
    exit 1
  fi
  say "installing Debian's ${PKGS[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt=(apt-get install -y -q --no-install-recommends "${PKGS[@]}")
  if ! "${AS[@]}" "${apt[@]}" >/tmp/make-test-apt.log 2>&1; then
    "${AS[@]}" apt-get update -q >>/tmp/make-test-apt.log 2>&1 || true
    "${AS[@]}" "${apt[@]}" >>/tmp/make-test-apt.log 2>&1 || {
      tail -n 5 /tmp/make-test-apt.log >&2
      say "could not install ${PKGS[*]} with apt-get (log: /tmp/make-test-apt.log)" >&2
      exit 1
    }
  fi
  [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ] && command -v promtool >/dev/null || {
    say "apt-get installed ${PKGS[*]} but $CHROMIUM, $CHROMEDRIVER or promtool is missing" >&2
    exit 1
  }
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "the Node.js clients' tests need Node.js 20 and npm: run 'sudo apt-get install -y nodejs npm' and then 'make test' again" >&2
  exit 1
fi
lock=clients/node/package-lock.json
stamp=clients/node/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ] || [ clients/node/package.json -nt "$stamp" ]; then
  say "installing the Node.js clients' packages (npm ci in clients/node)"
  npm ci --prefix clients/node --no-audit --no-fund --loglevel=error
fi
