#!/usr/bin/env bash
# install-deps.sh brings every real dependency of Outpost onto this machine:
# PostgreSQL 15 with its headers, pgvector built from Debian's source package,
# the test tools (MinIO, etcd, kube-apiserver, controller-gen, helm) built from
# Go modules, Debian's Chromium for the hub page test and Debian's pgBackRest
# for the backup benchmark. Each step is skipped
# when its result is already in place, so a second run takes seconds.
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
PGVECTOR_VERSION=0.8.0
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

pg_packages="postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR postgresql-server-dev-$PG_MAJOR"

have_postgres() {
	local p
	for p in $pg_packages; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
	done
}
install_postgres() {
	apt_update_once
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pg_packages make gcc dpkg-dev
}

pg_config=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
have_pgvector() {
	grep -q "default_version = '$PGVECTOR_VERSION'" "/usr/share/postgresql/$PG_MAJOR/extension/vector.control" 2>/dev/null &&
		[ -f "$("$pg_config" --pkglibdir)/vector.so" ]
}
# pgvector is not packaged for this Debian release; Debian trixie has its
# source package, which builds against our PostgreSQL. The mirror is the one
# this machine already uses for its own release.
install_pgvector() {
	local srcs=/etc/apt/sources.list.d/outpost-trixie-src.sources mirror keyring work
	if [ ! -f "$srcs" ]; then
		mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1)
		[ -n "$mirror" ] || mirror=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1)
		[ -n "$mirror" ]
		keyring=/usr/share/keyrings/debian-archive-keyring.gpg
		printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' "$mirror" "$keyring" >"$srcs"
		apt_updated=
	fi
	apt_update_once
	work=$(mktemp -d)
	cd "$work"
	apt-get source --download-only "pgvector=$PGVECTOR_VERSION-1"
	dpkg-source -x pgvector_$PGVECTOR_VERSION-1.dsc src
	cd src
	make PG_CONFIG="$pg_config" OPTFLAGS=""
	make install PG_CONFIG="$pg_config"
	cd /
	rm -rf "$work"
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

have_kube_apiserver() { stamp_matches kube-apiserver "$(module_hash kube-apiserver)"; }
install_kube_apiserver() {
	cd "$repo/test/tools/kube-apiserver"
	go build -o "$bin/kube-apiserver" .
	module_hash kube-apiserver >"$stamps/kube-apiserver"
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
# side; Debian's package (2.45 on bookworm) is the version operators get.
have_pgbackrest() { dpkg-query -W -f='${Status}' pgbackrest 2>/dev/null | grep -q 'install ok installed'; }
install_pgbackrest() {
	apt_update_once
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pgbackrest
}

step postgres have_postgres install_postgres
step pgvector have_pgvector install_pgvector
[ "${1:-all}" = run ] && exit 0
step controller-gen have_controller_gen install_controller_gen
step etcd have_etcd install_etcd
step helm have_helm install_helm
step minio have_minio install_minio
step kube-apiserver have_kube_apiserver install_kube_apiserver
step chromium have_chromium install_chromium
step pgbackrest have_pgbackrest install_pgbackrest
