#!/usr/bin/env bash
# System libraries the kit needs on Debian/Ubuntu; installs only what is missing (idempotent, seconds when done).
#   libopenblas-dev : BLAS for building MinkowskiEngine (CPU)
#   libusb-1.0-0, libgl1, libgomp1 : shared libraries that `import open3d` loads
#   make : the README's commands
set -euo pipefail
pkgs=(libopenblas-dev libusb-1.0-0 libgl1 libgomp1 make)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present (${pkgs[*]})"
  exit 0
fi
echo "system packages: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
