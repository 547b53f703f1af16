# The instance image: PostgreSQL 15, pgvector and the outpost binary, run as
# `outpost instance run` by every PostgresInstance's pod and by the chart's
# controldb. PostgreSQL and pgvector are installed by the very script the
# tests use (scripts/install-deps.sh run), so the image runs what was tested.
#
#   docker build -f scripts/images/instance.Dockerfile -t outpost-instance .
#
# The build context is the repository root.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/outpost ./cmd/outpost

FROM debian:bookworm-slim
# The pods run as uid/gid 999 (kuberuntime's pod security context). The
# postgresql packages reuse an existing postgres account, so it is created
# first with that id.
RUN groupadd --system --gid 999 postgres && \
    useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --shell /bin/bash postgres
COPY scripts/install-deps.sh /tmp/outpost/scripts/install-deps.sh
# install-deps.sh needs the keyring for Debian unstable's source packages,
# from which it builds pgvector (0.8.7 or newer; it refuses anything older).
RUN apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates debian-archive-keyring && \
    OUTPOST_TOOLS_DIR=/tmp/outpost/tools /tmp/outpost/scripts/install-deps.sh run && \
    # The headers and compiler were for building pgvector only.
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q --auto-remove postgresql-server-dev-15 gcc make dpkg-dev && \
    rm -rf /var/lib/apt/lists/* /tmp/outpost /etc/apt/sources.list.d/outpost-sid-src.sources && \
    # Debian's package creates a cluster of its own; the instance manager
    # creates the one it runs on the volume instead.
    rm -rf /var/lib/postgresql/15 /etc/postgresql/15 && \
    mkdir -p /var/lib/postgresql/data /var/run/postgresql /etc/outpost && \
    chown -R 999:999 /var/lib/postgresql /var/run/postgresql /etc/outpost
COPY --from=build /out/outpost /usr/local/bin/outpost
USER 999:999
EXPOSE 5432 8008
ENTRYPOINT ["/usr/local/bin/outpost"]
CMD ["instance", "run"]
