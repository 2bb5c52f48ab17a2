#!/usr/bin/env bash
# System packages a fresh Debian machine may lack: the venv module and the PostgreSQL server binaries
# (used to start a project-local cluster when no CREDIT_ASSETS_DATABASE_URL is given, and by the tests
# when no server is reachable). Installs only what is missing.
set -euo pipefail

missing=()
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=("python3-venv")
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  missing+=("postgresql")
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing system packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
