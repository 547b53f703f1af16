# The controller image: the outpost binary alone, as `outpost controller`
# runs in the Helm chart's Deployment (uid 65532, read-only root filesystem).
#
#   docker build -f scripts/images/controller.Dockerfile -t outpost-controller .
#
# The build context is the repository root.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/outpost ./cmd/outpost

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/outpost /usr/local/bin/outpost
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/outpost"]
CMD ["controller", "--source", "kubernetes", "--runtime", "kubernetes"]
