#!/usr/bin/env bash
# Builds the container image pgfleet's Docker tests (and the sandbox) run,
# without any image registry: a tarball of this machine's own PostgreSQL
# and PgBouncer files, their shared libraries, a shell, coreutils and Perl,
# imported with `docker import`. Cached by tag: does nothing when the image
# exists. Usage: scripts/docker-image.sh [TAG] [MAJOR]
set -euo pipefail
tag="${1:-pgfleet-local/postgres:15}"
major="${2:-15}"
if docker image inspect "$tag" >/dev/null 2>&1; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
packages=(postgresql-"$major" postgresql-client-"$major" libpq5 pgbouncer perl-base dash coreutils
          libc-bin tzdata util-linux grep sed findutils)
for package in "${packages[@]}"; do
  dpkg -L "$package" 2>/dev/null || true
done | while read -r path; do
  if [ -f "$path" ] || [ -L "$path" ]; then printf '%s\n' "$path"; fi
done | sort -u > "$work/files"
# The shared libraries every program and library needs, with their links.
grep -E '/(s?bin|lib)/' "$work/files" | while read -r path; do
  if [ -f "$path" ]; then ldd "$path" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' || true; fi
done | sort -u | while read -r library; do
  printf '%s\n' "$library"
  readlink -f "$library"
done >> "$work/files"
printf '%s\n' /bin/sh /usr/lib/locale/C.utf8 >> "$work/files"
# Debian merges /bin, /lib and /sbin into /usr: store each file under its
# real directory, and the top-level links themselves.
while read -r path; do
  case "$path" in /bin|/sbin|/lib|/lib64|/lib32|/libx32) continue ;; esac
  printf '%s/%s\n' "$(readlink -f "$(dirname "$path")")" "$(basename "$path")"
done < "$work/files" > "$work/real"
for link in /bin /sbin /lib /lib64; do
  if [ -L "$link" ]; then printf '%s\n' "$link" >> "$work/real"; fi
done
sort -u "$work/real" > "$work/files"
mkdir -p "$work/etc"
grep -E '^(root|postgres):' /etc/passwd > "$work/etc/passwd"
grep -E '^(root|postgres|ssl-cert):' /etc/group > "$work/etc/group"
tar -cf "$work/root.tar" --no-recursion -T "$work/files" 2>/dev/null \
  || tar -cf "$work/root.tar" -T "$work/files"
tar -rf "$work/root.tar" -C "$work" etc/passwd etc/group
mkdir -p "$work/empty/tmp" "$work/empty/var/run/postgresql"
chmod 1777 "$work/empty/tmp"
chown postgres:postgres "$work/empty/var/run/postgresql"
tar -rf "$work/root.tar" -C "$work/empty" tmp var/run/postgresql
docker import \
  --change "ENV PATH=/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV LANG=C.UTF-8" \
  "$work/root.tar" "$tag" >/dev/null
