#!/usr/bin/env bash
# Builds the Dockerfile's runtime base image, debian:bookworm-slim, locally
# from Debian's packages, for machines whose Docker engine cannot pull images.
#
#   scripts/base-image.sh [tag]        # default tag: debian:bookworm-slim
#
# debootstrap installs a minimal bookworm into a folder, using the package
# mirror of this machine's own apt configuration (no host name is written
# here), and `docker import` turns the folder into an image under the tag
# the Dockerfile's FROM line names, so the Dockerfile users get is the one
# CI builds. Does nothing when the tag already exists. Needs root.
set -euo pipefail

tag="${1:-debian:bookworm-slim}"
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag already present"
    exit 0
fi

# The first bookworm (or any) mirror apt is configured with: deb822 sources
# (URIs:) or one-line sources (deb URI suite ...).
mirror="$(
    {
        grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true
        grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' || true
    } | grep -v -- '-security' | grep -i debian | head -n 1 || true
)"
if [ -z "$mirror" ]; then
    echo "no Debian mirror found in /etc/apt/sources.list*" >&2
    exit 1
fi

if ! command -v debootstrap >/dev/null; then
    # The package lists may be empty on a fresh machine.
    apt-get install -y --no-install-recommends debootstrap >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y --no-install-recommends debootstrap >/dev/null; }
fi

root="$(mktemp -d /tmp/candor-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm from $mirror into $root"
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >/dev/null
# Slim it as the official -slim image does: no docs, man pages or apt lists.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$tag" >/dev/null
docker image ls "$tag"
