// Package image builds Outpost's two container images, the controller image
// and the instance image, without Docker and without a registry, as
// docker-archive tarballs: what `docker save` writes, and what both
// `docker load` and containerd's `ctr images import` read.
//
// Both images are the same two layers:
//
//  1. the base layer, Debian bookworm minbase with PostgreSQL 15, pgvector
//     and ca-certificates, built and cached by scripts/install-deps.sh (step
//     image-base) at $OUTPOST_TOOLS_DIR/images/base.tar;
//  2. a thin layer holding /usr/local/bin/outpost and nothing else.
//
// They differ only in their config (user, command), which is what
// scripts/images/*.Dockerfile say, so containerd stores the layers once and a
// new outpost binary adds one small layer. Layers are written uncompressed,
// as `docker save` does: the base layer is read from its cache, never
// re-compressed, and the outpost layer is reproducible (fixed times and
// owners), so the same binary always gives the same image ID.
//
// Use:
//
//	built, err := image.Build(ctx, image.Spec{
//		BaseLayer: image.DefaultBaseLayer(),
//		Outpost:   "/path/to/outpost",
//		Tag:       "dev",
//		Dir:       outDir,
//	})
//	// built.Instance.Path is outDir/outpost-instance.tar, holding
//	// built.Instance.Ref, "localhost/outpost-instance:dev"; then, on a node,
//	// ctr -n k8s.io images import built.Instance.Path
//
// BuildArchive writes both images into one archive instead, each layer once,
// as an air-gap bundle carries them. InstanceConfig and ControllerConfig are
// the configs, and the exported constants their parts, for tests and for
// pods that must match them.
//
// The package does not import images anywhere; package bundle does that.
package image
