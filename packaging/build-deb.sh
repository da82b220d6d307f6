#!/usr/bin/env bash
# Builds the Debian package: with cargo-deb when it is installed (`cargo install cargo-deb`; it reads
# [package.metadata.deb] in Cargo.toml), otherwise by staging the same files and running dpkg-deb.
#   packaging/build-deb.sh [BINARY [OUT_DIR]]     (default: cargo build --release; target/debian)
# GDPRD_DEB_COMPRESSION=none|gzip|xz (default xz) picks the compression of the staged build.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-}
out=${2:-target/debian}
if [ -z "$binary" ]; then
    cargo build --release --quiet
    binary=target/release/gdprd
fi
mkdir -p target/assets "$out"
"$binary" generate-assets --out target/assets >/dev/null
version=$("$binary" --version | awk '{print $2}')
if command -v cargo-deb >/dev/null && [ -z "${1:-}" ]; then
    cargo deb --no-build --output "$out"
    exit 0
fi
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$binary" "$stage/usr/bin/gdprd"
install -D -m 0644 systemd/gdprd.service "$stage/lib/systemd/system/gdprd.service"
install -D -m 0640 packaging/gdprd.toml "$stage/etc/gdprd/gdprd.toml"
for page in target/assets/*.1.gz; do install -D -m 0644 "$page" "$stage/usr/share/man/man1/$(basename "$page")"; done
install -D -m 0644 target/assets/gdprd.bash "$stage/usr/share/bash-completion/completions/gdprd"
install -D -m 0644 target/assets/_gdprd "$stage/usr/share/zsh/vendor-completions/_gdprd"
install -D -m 0644 target/assets/gdprd.fish "$stage/usr/share/fish/vendor_completions.d/gdprd.fish"
for doc in docs/*.md; do install -D -m 0644 "$doc" "$stage/usr/share/doc/gdprd/$(basename "$doc")"; done
mkdir -p "$stage/DEBIAN"
echo /etc/gdprd/gdprd.toml > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: gdprd
Version: $version
Architecture: $arch
Maintainer: gdprd maintainers
Section: admin
Priority: optional
Depends: libc6
Description: carries out GDPR data-subject requests dropped as files over SFTP
 gdprd erases or exports a person's data across every store that holds it,
 from forget and export request files, with an execution log per file.
CONTROL
dpkg-deb --root-owner-group -Z"${GDPRD_DEB_COMPRESSION:-xz}" --build "$stage" "$out/gdprd_${version}_${arch}.deb" >/dev/null
echo "$out/gdprd_${version}_${arch}.deb"
