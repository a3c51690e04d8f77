#!/usr/bin/env bash
# Builds facecast_<version>_<arch>.deb from a release binary built with `embed-models`.
#   cross/deb/build.sh TARGET-TRIPLE BINARY [OUTDIR]
# (`make deb` runs it for arm64 and armhf.) The package: /usr/bin/facecast, the configuration
# /etc/facecast/facecast.toml (config/facecast.toml reading the built-in models), the systemd
# unit, the docs and licences; postinst makes the `facecast` system user (in `video`) and
# /var/lib/facecast. Before packing, the binary runs `models --verify` with the packaged
# configuration (under qemu for ARM), so a package without its models is never made.
set -euo pipefail
cd "$(dirname "$0")/../.."
triple=$1 binary=$2
out=${3:-${CARGO_TARGET_DIR:-/var/tmp/facecast-target}/deb}
case $triple in
    aarch64-unknown-linux-gnu) arch=arm64 run=(qemu-aarch64-static -L /usr/aarch64-linux-gnu -cpu cortex-a72) ;;
    armv7-unknown-linux-gnueabihf) arch=armhf run=(qemu-arm-static -L /usr/arm-linux-gnueabihf) ;;
    x86_64-unknown-linux-gnu) arch=amd64 run=() ;;
    *) echo "build.sh: no Debian architecture for $triple" >&2; exit 2 ;;
esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"

install -D -m 0755 "$binary" "$stage/usr/bin/facecast"
# The documented default configuration, reading the models built into the binary.
install -d "$stage/etc/facecast"
sed 's/^dir = "models"$/dir = "embedded"/' config/facecast.toml >"$stage/etc/facecast/facecast.toml"
grep -qx 'dir = "embedded"' "$stage/etc/facecast/facecast.toml" ||
    { echo "build.sh: config/facecast.toml has no 'dir = \"models\"' line to change" >&2; exit 1; }
install -D -m 0644 cross/deb/facecast.service "$stage/lib/systemd/system/facecast.service"
doc="$stage/usr/share/doc/facecast"
install -d "$doc"
install -m 0644 README.md docs/deploy.md "$doc/"
install -m 0644 models/LICENSES.md "$doc/MODEL-LICENSES.md"
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: facecast

Files: *
License: Apache-2.0
Comment: The model files built into /usr/bin/facecast have their own licences (Apache-2.0,
 MIT, CC0-1.0): see /usr/share/doc/facecast/MODEL-LICENSES.md. On Debian systems the full text
 of the Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

# The binary must run and carry its models, with the configuration it ships with.
echo "build.sh: $arch: facecast models --verify with the packaged configuration"
"${run[@]}" "$binary" --config "$stage/etc/facecast/facecast.toml" models --verify

# Dependencies: the newest glibc symbol version the binary needs, and the libraries it links.
glibc=$(readelf -V "$binary" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
needed=$(readelf -d "$binary" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')
depends="libc6 (>= $glibc), adduser"
case $needed in *libgcc_s*) depends="$depends, libgcc-s1" ;; esac

install -d "$stage/DEBIAN"
install -m 0755 cross/deb/postinst cross/deb/prerm cross/deb/postrm "$stage/DEBIAN/"
echo /etc/facecast/facecast.toml >"$stage/DEBIAN/conffiles"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: facecast
Version: $version
Architecture: $arch
Maintainer: facecast developers <facecast@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: $depends
Section: video
Priority: optional
Description: a camera as a facial-analysis sensor
 facecast reads frames from a V4L2 camera, finds faces and their landmarks, head pose and
 gaze with on-device models (built into the binary), and publishes compact JSON or CBOR
 records to an MQTT broker. Runs as the systemd service facecast.service.
CONTROL

mkdir -p "$out"
deb="$out/facecast_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "build.sh: $deb ($(stat -c %s "$deb") bytes; needs $needed; Depends: $depends)"
