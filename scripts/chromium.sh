#!/usr/bin/env bash
# Makes sure headless Chromium and its WebDriver are installed for the
# playground's browser test (Debian's chromium and chromium-driver), and
# prints the driver's path:
#   export CANDOR_CHROMEDRIVER=$(scripts/chromium.sh)
set -euo pipefail
if ! command -v chromedriver > /dev/null || ! command -v chromium > /dev/null; then
  echo "chromium.sh: installing chromium and chromium-driver from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq chromium chromium-driver >&2
fi
command -v chromedriver
