package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The images' names. "localhost/" keeps containerd and Docker from reading
// them as Docker Hub names; pods use them with imagePullPolicy: Never.
const (
	ControllerRepository = "localhost/outpost-controller"
	InstanceRepository   = "localhost/outpost-instance"
)

// OutpostBinary is where both images hold the outpost binary; it is the
// entrypoint of both.
const OutpostBinary = "/" + outpostPath

// The instance image's contract with the pods kuberuntime makes and with
// the chart's controldb: PostgreSQL runs as postgres, uid/gid 999, on a
// volume mounted at DataDir.
const (
	InstanceUser = "999:999"
	DataDir      = "/var/lib/postgresql/data"
	// ControllerUser is distroless's "nonroot", as in controller.Dockerfile.
	ControllerUser = "65532:65532"
)

// The commands each image runs by default.
var (
	InstanceCmd   = []string{"instance", "run"}
	ControllerCmd = []string{"controller", "--source", "kubernetes", "--runtime", "kubernetes"}
	// InstancePorts are PostgreSQL's and the instance manager's HTTP port.
	InstancePorts = []string{"5432/tcp", "8008/tcp"}
)

// path is Debian's default PATH for root, as in debian:bookworm-slim.
const path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Spec says what to build from and where to write it.
type Spec struct {
	// BaseLayer is the base layer tar (DefaultBaseLayer when empty).
	BaseLayer string
	// Outpost is the outpost binary to put in the images. It must be built
	// for linux on this machine's architecture.
	Outpost string
	// Tag is the tag of both references, e.g. "dev" or a version.
	Tag string
	// Dir is the directory the two archives are written to.
	Dir string
}

// Archive is one written image.
type Archive struct {
	// Ref is the image's name in the archive, e.g.
	// "localhost/outpost-instance:dev".
	Ref string
	// Path is the docker-archive tarball.
	Path string
}

// Built is what Build wrote.
type Built struct {
	Controller, Instance Archive
}

// DefaultBaseLayer is where scripts/install-deps.sh caches the base layer:
// $OUTPOST_TOOLS_DIR/images/base.tar, by default under
// ~/.cache/outpost/tools.
func DefaultBaseLayer() string {
	tools := os.Getenv("OUTPOST_TOOLS_DIR")
	if tools == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "/root"
		}
		tools = filepath.Join(home, ".cache", "outpost", "tools")
	}
	return filepath.Join(tools, "images", "base.tar")
}

// Build writes the controller image to Dir/outpost-controller.tar and the
// instance image to Dir/outpost-instance.tar. An existing archive of the
// same name is replaced only once the new one is complete.
func Build(ctx context.Context, s Spec) (Built, error) {
	b := Built{
		Controller: Archive{Ref: ControllerRepository + ":" + s.Tag, Path: filepath.Join(s.Dir, "outpost-controller.tar")},
		Instance:   Archive{Ref: InstanceRepository + ":" + s.Tag, Path: filepath.Join(s.Dir, "outpost-instance.tar")},
	}
	err := build(ctx, s, func(controller, instance v1.Image) error {
		if err := write(b.Controller.Path, map[string]v1.Image{b.Controller.Ref: controller}); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return write(b.Instance.Path, map[string]v1.Image{b.Instance.Ref: instance})
	})
	if err != nil {
		return Built{}, err
	}
	return b, nil
}

// BuildArchive writes both images into one archive at path, each layer
// stored once: ControllerRepository and InstanceRepository, both tagged
// s.Tag. It is what an air-gap bundle carries (half the size of two
// archives); s.Dir is only where the thin layer is staged.
func BuildArchive(ctx context.Context, s Spec, path string) error {
	return build(ctx, s, func(controller, instance v1.Image) error {
		return write(path, map[string]v1.Image{
			ControllerRepository + ":" + s.Tag: controller,
			InstanceRepository + ":" + s.Tag:   instance,
		})
	})
}

// build checks s, stages the thin layer in s.Dir and hands both images to
// emit; the staged layer is removed afterwards.
func build(ctx context.Context, s Spec, emit func(controller, instance v1.Image) error) error {
	if s.BaseLayer == "" {
		s.BaseLayer = DefaultBaseLayer()
	}
	if s.Tag == "" {
		return fmt.Errorf("image build: Tag is empty")
	}
	for _, repo := range []string{ControllerRepository, InstanceRepository} {
		if _, err := name.NewTag(repo + ":" + s.Tag); err != nil {
			return fmt.Errorf("image build: tag %q: %w", s.Tag, err)
		}
	}
	if s.Outpost == "" {
		return fmt.Errorf("image build: Outpost (the binary) is empty")
	}
	if _, err := os.Stat(s.BaseLayer); err != nil {
		return fmt.Errorf("base layer %s: %w (scripts/install-deps.sh builds it, step image-base)", s.BaseLayer, err)
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("image build: %w", err)
	}
	thin, err := os.CreateTemp(s.Dir, ".outpost-layer-*.tar")
	if err != nil {
		return fmt.Errorf("image build: %w", err)
	}
	thin.Close()
	defer os.Remove(thin.Name())
	if err := writeOutpostLayer(s.Outpost, thin.Name()); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Both images are made of the same two layer values, so each blob is
	// hashed once.
	layers := []v1.Layer{&fileLayer{path: s.BaseLayer}, &fileLayer{path: thin.Name()}}
	controller, err := assemble(layers, ControllerConfig())
	if err != nil {
		return fmt.Errorf("controller image: %w", err)
	}
	instance, err := assemble(layers, InstanceConfig())
	if err != nil {
		return fmt.Errorf("instance image: %w", err)
	}
	return emit(controller, instance)
}

// InstanceConfig is the instance image's config, as instance.Dockerfile
// describes it.
func InstanceConfig() v1.Config {
	ports := map[string]struct{}{}
	for _, p := range InstancePorts {
		ports[p] = struct{}{}
	}
	return v1.Config{
		User:         InstanceUser,
		Entrypoint:   []string{OutpostBinary},
		Cmd:          InstanceCmd,
		ExposedPorts: ports,
		Env:          []string{path},
	}
}

// ControllerConfig is the controller image's config, as
// controller.Dockerfile describes it.
func ControllerConfig() v1.Config {
	return v1.Config{
		User:       ControllerUser,
		Entrypoint: []string{OutpostBinary},
		Cmd:        ControllerCmd,
		Env:        []string{path},
	}
}

// assemble makes an image of layers with cfg as its config.
func assemble(layers []v1.Layer, cfg v1.Config) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = runtime.GOARCH, "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// write writes images, by reference, as one docker archive at path,
// through a temporary file so that path is never half-written.
func write(path string, images map[string]v1.Image) error {
	refs := map[name.Reference]v1.Image{}
	for r, img := range images {
		tag, err := name.NewTag(r)
		if err != nil {
			return fmt.Errorf("image %s: %w", r, err)
		}
		refs[tag] = img
	}
	tmp := path + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing images to %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing images: %w", err)
	}
	return nil
}
