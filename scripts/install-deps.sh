#!/usr/bin/env bash
# install-deps.sh brings every real dependency of Outpost onto this machine:
# PostgreSQL 15 with its headers, pgvector (0.8.7 or newer) built from Debian
# unstable's source package, the test tools (MinIO, etcd, the Kubernetes
# components, CoreDNS, controller-gen, helm) built from Go modules, Debian's
# containerd, runc and CNI plugins for a one-node cluster, Debian's Chromium
# for the hub page test, Debian's pgBackRest for the backup benchmark, and the
# container images' cached base layer (debootstrap, see bundle/image). Each
# step is skipped when its result is already in place, so a second run takes
# seconds.
#
#   scripts/install-deps.sh        everything (what `make test` needs)
#   scripts/install-deps.sh run    only what `outpost up` needs
#
# Built tools go to $OUTPOST_TOOLS_DIR (default ~/.cache/outpost/tools), outside
# the work tree, so a fresh clone on the same machine finds them.
set -euo pipefail

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
CONTROLLER_GEN_VERSION=v0.23.0
HELM_VERSION=v3.22.0
# pgvector before 0.8.7 has known CVEs (CVE-2026-3172 in parallel HNSW builds,
# CVE-2026-18022) and an HNSW vacuum corruption bug. Debian unstable's source
# package is built when its files can be fetched; when the mirror lists it but
# does not serve it, the newest pgvector release on the Go module proxy is
# built instead (verified against the Go checksum database), with a warning,
# and nothing older than PGVECTOR_FLOOR (the last HNSW vacuum fix) is accepted.
PGVECTOR_MIN_VERSION=0.8.7
PGVECTOR_FLOOR=0.8.4
PG_MAJOR=15

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${OUTPOST_TOOLS_DIR:-$HOME/.cache/outpost/tools}
bin=$tools/bin
stamps=$tools/stamps
mkdir -p "$bin" "$stamps"
export GOBIN=$bin GOFLAGS=-buildvcs=false

# step NAME CHECK INSTALL: runs INSTALL unless CHECK already holds, and prints
# one line with the time it took. A failing INSTALL names the command that
# failed and shows the end of its output.
step() {
	local name=$1 check=$2 install=$3 start=$SECONDS log failed rc
	if "$check"; then
		printf '%-16s cached\n' "$name"
		return 0
	fi
	log=$(mktemp) failed=$(mktemp)
	set +e
	(
		set -eE
		trap 'printf "%s" "$BASH_COMMAND" >"$failed"' ERR
		"$install"
	) >"$log" 2>&1
	rc=$?
	set -e
	if [ "$rc" -ne 0 ]; then
		printf '%-16s FAILED after %ss\n' "$name" $((SECONDS - start)) >&2
		printf 'install-deps: step %s failed (exit %s) running: %s\n' "$name" "$rc" "$(cat "$failed")" >&2
		printf -- '--- last lines of its output (%s) ---\n' "$log" >&2
		tail -n 30 "$log" >&2
		exit 1
	fi
	"$check" || { printf 'install-deps: step %s ran but its check still fails\n' "$name" >&2; exit 1; }
	printf '%-16s installed in %ss\n' "$name" $((SECONDS - start))
	rm -f "$log" "$failed"
}

apt_updated=
apt_update_once() {
	[ -n "$apt_updated" ] && return 0
	apt-get update -qq
	apt_updated=1
}

# debs_installed PACKAGE...: whether every Debian package named is installed.
debs_installed() {
	local p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
	done
}

pg_packages="postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR postgresql-server-dev-$PG_MAJOR"

have_postgres() { debs_installed $pg_packages; }
install_postgres() {
	apt_update_once
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pg_packages make gcc dpkg-dev
}

pg_config=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
# control_version prints the default_version of a vector.control file.
control_version() { sed -n "s/^default_version = '\(.*\)'$/\1/p" "$1" 2>/dev/null; }
have_pgvector() {
	local v floor=$PGVECTOR_MIN_VERSION
	# A fallback build stands until its stamp is removed: the mirror is
	# not asked again on every run.
	[ -f "$stamps/pgvector-fallback" ] && floor=$PGVECTOR_FLOOR
	v=$(control_version "/usr/share/postgresql/$PG_MAJOR/extension/vector.control")
	[ -n "$v" ] && dpkg --compare-versions "$v" ge "$floor" &&
		[ -f "$("$pg_config" --pkglibdir)/vector.so" ]
}
# add_deb_src SUITE lets apt-get source fetch Debian SUITE's source packages,
# from the mirror this machine already uses for its own release, through a
# sources file of its own.
add_deb_src() {
	local suite=$1 srcs=/etc/apt/sources.list.d/outpost-$1-src.sources mirror
	[ -f "$srcs" ] && return 0
	mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1)
	[ -n "$mirror" ] || mirror=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1)
	[ -n "$mirror" ]
	printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
		"$mirror" "$suite" /usr/share/keyrings/debian-archive-keyring.gpg >"$srcs"
	apt_updated=
}
# pgvector is not packaged for this Debian release; Debian unstable (sid)
# has the newest source package, which builds against our PostgreSQL. An
# older installed pgvector (0.8.0) is replaced: the extension's update
# scripts come with it, and Outpost runs ALTER EXTENSION vector UPDATE.
install_pgvector() {
	local version upstream work
	add_deb_src sid
	apt_update_once
	version=$(apt-cache showsrc pgvector | sed -n 's/^Version: //p' | sort -V | tail -n1)
	upstream=${version#*:}
	upstream=${upstream%-*}
	work=$(mktemp -d)
	cd "$work"
	if [ -n "$version" ] && dpkg --compare-versions "$upstream" ge "$PGVECTOR_MIN_VERSION" &&
		apt-get source --download-only "pgvector=$version"; then
		dpkg-source -x "pgvector_${version#*:}.dsc" src
		build_pgvector src "$upstream" "$PGVECTOR_MIN_VERSION" "Debian source $version"
		rm -f "$stamps/pgvector-fallback"
	else
		echo "install-deps: WARNING: Debian lists pgvector ${version:-nowhere} but its source files could not be downloaded;" \
			"building the newest pgvector release on the Go module proxy instead (CVE-2026-18022 may be unfixed before $PGVECTOR_MIN_VERSION)" >&2
		fetch_pgvector_from_go_proxy src
		upstream=$(control_version src/vector.control)
		build_pgvector src "$upstream" "$PGVECTOR_FLOOR" "github.com/pgvector/pgvector v$upstream (Go module proxy)"
		echo "v$upstream" >"$stamps/pgvector-fallback"
	fi
	cd /
	rm -rf "$work"
}

# fetch_pgvector_from_go_proxy DIR copies pgvector's newest tagged release
# into DIR. The proxy serves the repository as a module, and `go mod
# download` checks it against the Go checksum database.
fetch_pgvector_from_go_proxy() {
	local out dir
	out=$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json github.com/pgvector/pgvector@latest)
	dir=$(printf '%s\n' "$out" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$dir" ] && [ -f "$dir/vector.control" ]
	cp -r "$dir" "$1"
	chmod -R u+w "$1"
}

# build_pgvector DIR VERSION FLOOR FROM builds and installs the pgvector
# source in DIR, after checking it is VERSION and at least FLOOR.
build_pgvector() {
	local built
	built=$(control_version "$1/vector.control")
	if [ "$built" != "$2" ] || ! dpkg --compare-versions "$built" ge "$3"; then
		echo "install-deps: pgvector from $4 is version '$built', want $2 (at least $3)" >&2
		return 1
	fi
	make -C "$1" PG_CONFIG="$pg_config" OPTFLAGS=""
	make -C "$1" install PG_CONFIG="$pg_config"
	echo "pgvector $built built from $4"
}

# A stamp records what a binary was built from; a different pin rebuilds it.
stamp_matches() { [ -x "$bin/$1" ] && [ "$(cat "$stamps/$1" 2>/dev/null)" = "$2" ]; }
module_hash() { cat "$repo/test/tools/$1"/go.mod "$repo/test/tools/$1"/go.sum "$repo/test/tools/$1"/*.go | sha256sum | cut -c1-16; }

have_minio() { stamp_matches minio "$MINIO_VERSION"; }
install_minio() {
	go install "github.com/minio/minio@$MINIO_VERSION"
	echo "$MINIO_VERSION" >"$stamps/minio"
}

have_etcd() { stamp_matches etcd "$(module_hash etcd)"; }
install_etcd() {
	cd "$repo/test/tools/etcd"
	go build -o "$bin/etcd" .
	module_hash etcd >"$stamps/etcd"
}

# One multi-call binary holds every Kubernetes component: kube-apiserver for
# envtest, and kubelet, kube-controller-manager, kube-scheduler, kube-proxy and
# kubectl for the one-node cluster of the end-to-end tests. One compile and one
# link instead of six; each component is a symlink to it.
KUBE_VERSION=v1.36.3
kube_components="kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy kubectl"
have_kube() {
	local c
	stamp_matches kube "$(module_hash kube)" || return 1
	for c in $kube_components; do
		[ "$(readlink "$bin/$c")" = kube ] || return 1
	done
}
install_kube() {
	local minor=${KUBE_VERSION#v1.} c
	minor=${minor%%.*}
	cd "$repo/test/tools/kube"
	# Without these the components report v0.0.0-master, which the kubelet's
	# version skew checks and `kubectl version` show to the user.
	go build -ldflags "-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
		-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
		-o "$bin/kube" .
	for c in $kube_components; do
		ln -sfn kube "$bin/$c"
	done
	module_hash kube >"$stamps/kube"
}

have_coredns() { stamp_matches coredns "$(module_hash coredns)"; }
install_coredns() {
	cd "$repo/test/tools/coredns"
	go build -o "$bin/coredns" .
	module_hash coredns >"$stamps/coredns"
}

# The node runtime of the one-node cluster comes from Debian: containerd,
# runc and the CNI plugins; nftables and iptables for kube-proxy and the CNI
# bridge; debootstrap for the images' Debian base layer.
node_packages="containerd runc containernetworking-plugins nftables iptables debootstrap"
have_node_packages() { debs_installed $node_packages; }
install_node_packages() {
	apt_update_once
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $node_packages
}

have_controller_gen() { stamp_matches controller-gen "$CONTROLLER_GEN_VERSION"; }
install_controller_gen() {
	go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION"
	echo "$CONTROLLER_GEN_VERSION" >"$stamps/controller-gen"
}

have_helm() { stamp_matches helm "$HELM_VERSION"; }
install_helm() {
	go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
	echo "$HELM_VERSION" >"$stamps/helm"
}

# Chromium renders the hub's web page in a test, the way an operator's browser
# would (headless, from 127.0.0.1, no network).
have_chromium() { [ -x /usr/bin/chromium ]; }
install_chromium() {
	apt_update_once
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
}

# pgBackRest is the peer the backup benchmark measures us against, side by
# side; Debian's package (2.45 on bookworm) is the version operators get. The
# zstd command is the same benchmark's decompression limit.
have_pgbackrest() { debs_installed pgbackrest zstd; }
install_pgbackrest() {
	apt_update_once
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pgbackrest zstd
}

# The images' base layer: Debian minbase with PostgreSQL 15, ca-certificates
# and the pgvector built above, as one layer tar that bundle/image puts under
# a thin layer holding the outpost binary (no Docker, no registry). It keeps
# the Dockerfiles' contract: postgres is uid/gid 999, created before the
# packages so they reuse it; no Debian default cluster; the data directory,
# socket directory and /etc/outpost belong to 999. The stamp holds what the
# layer was built from (these functions and pgvector's version), so a change
# to either rebuilds it and nothing else does.
image_base=$tools/images/base.tar
image_base_stamp() {
	printf '%s pgvector-%s pg-%s\n' \
		"$(declare -f have_image_base install_image_base | sha256sum | cut -c1-16)" \
		"$(control_version "/usr/share/postgresql/$PG_MAJOR/extension/vector.control")" "$PG_MAJOR"
}
have_image_base() { [ -s "$image_base" ] && [ "$(cat "$stamps/image-base" 2>/dev/null)" = "$(image_base_stamp)" ]; }
install_image_base() {
	local root ext lib
	command -v debootstrap >/dev/null || { apt_update_once; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap; }
	root=$(mktemp -d "$tools/images-root.XXXXXX")
	trap 'umount "$root/proc" 2>/dev/null; rm -rf "$root"' EXIT
	debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian
	printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' >"$root/etc/apt/sources.list"
	# No service may start inside the build, and Debian's own cluster is
	# not wanted: the instance manager runs initdb on the volume.
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	mkdir -p "$root/etc/postgresql-common"
	echo 'create_main_cluster = false' >"$root/etc/postgresql-common/createcluster.conf"
	mount -t proc proc "$root/proc"
	chroot "$root" groupadd --system --gid 999 postgres
	chroot "$root" useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --shell /bin/bash postgres
	chroot "$root" apt-get update -qq
	chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confold "postgresql-$PG_MAJOR" ca-certificates
	umount "$root/proc"
	# pgvector as install-deps built it for this PostgreSQL major on this
	# Debian release, so the image runs what the tests ran.
	ext=/usr/share/postgresql/$PG_MAJOR/extension lib=$("$pg_config" --pkglibdir)
	cp "$lib/vector.so" "$root$lib/"
	cp "$ext"/vector.control "$ext"/vector--*.sql "$root$ext/"
	rm -rf "$root/var/lib/postgresql/$PG_MAJOR" "$root/etc/postgresql/$PG_MAJOR" "$root/usr/sbin/policy-rc.d"
	mkdir -p "$root/var/lib/postgresql/data" "$root/var/run/postgresql" "$root/etc/outpost"
	chown -R 999:999 "$root/var/lib/postgresql" "$root/var/run/postgresql" "$root/etc/outpost"
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/*
	# Device nodes are the runtime's to make; the layer carries empty /dev.
	rm -rf "$root"/dev/* "$root"/proc/* "$root"/sys/*
	mkdir -p "$(dirname "$image_base")"
	(cd "$root" && tar --numeric-owner --sort=name -cf "$image_base.tmp" $(ls -A))
	mv "$image_base.tmp" "$image_base"
	image_base_stamp >"$stamps/image-base"
	rm -rf "$root"
	trap - EXIT
}

step postgres have_postgres install_postgres
step pgvector have_pgvector install_pgvector
if [ -f "$stamps/pgvector-fallback" ]; then
	printf '%-16s WARNING: %s from the Go module proxy, not Debian'"'"'s %s source, which the mirror did not serve; remove %s to try Debian again\n' \
		pgvector "$(cat "$stamps/pgvector-fallback")" "$PGVECTOR_MIN_VERSION" "$stamps/pgvector-fallback" >&2
fi
[ "${1:-all}" = run ] && exit 0
step node-packages have_node_packages install_node_packages
step controller-gen have_controller_gen install_controller_gen
step etcd have_etcd install_etcd
step helm have_helm install_helm
step minio have_minio install_minio
step kube have_kube install_kube
step coredns have_coredns install_coredns
step chromium have_chromium install_chromium
step pgbackrest have_pgbackrest install_pgbackrest
step image-base have_image_base install_image_base
