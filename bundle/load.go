package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultContainerdAddress is containerd's socket on a node.
const DefaultContainerdAddress = "/run/containerd/containerd.sock"

// ImportOptions says where a bundle goes.
type ImportOptions struct {
	VerifyOptions
	// Dir is where the bundle's files are extracted; by default the
	// bundle's name without ".tar", beside it. A Dir that exists must be
	// an earlier extraction (it holds SHA256SUMS), which is replaced.
	Dir string
	// ContainerdAddress is containerd's socket (DefaultContainerdAddress
	// when empty).
	ContainerdAddress string
	// Log receives the loader's output.
	Log io.Writer
}

// Imported is a bundle that was verified, extracted and loaded.
type Imported struct {
	*Verified
	// Dir holds the extracted files; the chart is Dir/chart/outpost.
	Dir string
	// Runtime is "containerd" or "docker".
	Runtime string
}

// Import verifies the bundle while extracting it, then loads its images
// into containerd (when ctr and its socket are there) or else Docker. It
// loads nothing from a bundle that fails verification.
func Import(ctx context.Context, file string, o ImportOptions) (*Imported, error) {
	if o.ContainerdAddress == "" {
		o.ContainerdAddress = DefaultContainerdAddress
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Dir == "" {
		o.Dir = strings.TrimSuffix(file, ".tar")
		if o.Dir == file {
			o.Dir = file + ".d"
		}
	}
	// Find the runtime first: a machine that has neither should learn it
	// before waiting for an extraction.
	load, runtime, err := loader(o.ContainerdAddress)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(o.Dir, SumsFile)); err != nil {
		if _, err := os.Stat(o.Dir); err == nil {
			return nil, fmt.Errorf("%s exists and is not an extracted bundle: choose another directory with --dir", o.Dir)
		}
	}
	stage, err := os.MkdirTemp(filepath.Dir(o.Dir), ".outpost-bundle-")
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", file, err)
	}
	defer os.RemoveAll(stage)
	v, err := read(file, stage, o.VerifyOptions)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(o.Dir); err != nil {
		return nil, fmt.Errorf("replacing %s: %w", o.Dir, err)
	}
	if err := os.Rename(stage, o.Dir); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", file, err)
	}
	// MkdirTemp made it 0700; the chart and binary are for anyone.
	if err := os.Chmod(o.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := load(ctx, filepath.Join(o.Dir, ImagesFile), o.Log); err != nil {
		return nil, err
	}
	return &Imported{Verified: v, Dir: o.Dir, Runtime: runtime}, nil
}

type loadFunc func(ctx context.Context, archive string, log io.Writer) error

// loader picks containerd when ctr is on PATH and its socket exists,
// else Docker when docker is on PATH.
func loader(containerd string) (loadFunc, string, error) {
	ctr, ctrErr := exec.LookPath("ctr")
	_, sockErr := os.Stat(containerd)
	if ctrErr == nil && sockErr == nil {
		return func(ctx context.Context, archive string, log io.Writer) error {
			// k8s.io is the namespace kubelet's CRI reads images from.
			return run(ctx, log, ctr, "-a", containerd, "-n", "k8s.io", "images", "import", archive)
		}, "containerd", nil
	}
	if docker, err := exec.LookPath("docker"); err == nil {
		return func(ctx context.Context, archive string, log io.Writer) error {
			return run(ctx, log, docker, "load", "-i", archive)
		}, "docker", nil
	}
	var why string
	switch {
	case ctrErr != nil:
		why = "ctr (containerd's client) is not on PATH"
	default:
		why = fmt.Sprintf("ctr is on PATH but containerd's socket %s is not there (set --containerd-address)", containerd)
	}
	return nil, "", fmt.Errorf("cannot load the images: %s, and docker is not on PATH either; "+
		"run this on a node with containerd or Docker, or load %s from the extracted bundle yourself", why, ImagesFile)
}

func run(ctx context.Context, log io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = io.MultiWriter(log, &out), io.MultiWriter(log, &out)
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		var exit *exec.ExitError
		if errors.As(err, &exit) && msg != "" {
			return fmt.Errorf("loading the images: %s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, msg)
		}
		return fmt.Errorf("loading the images: %s %s: %w", filepath.Base(name), strings.Join(args, " "), err)
	}
	return nil
}

// HelmInstall is the command that installs the extracted chart with the
// loaded images, which the nodes must never try to pull.
func (i *Imported) HelmInstall() string {
	tag := i.Info.Tag
	return strings.Join([]string{
		"helm install outpost " + shellQuote(filepath.Join(i.Dir, ChartDir)),
		"--namespace outpost-system --create-namespace",
		"--set image.repository=" + i.Info.ControllerImage,
		"--set image.tag=" + tag,
		"--set image.pullPolicy=Never",
		"--set instanceImage.repository=" + i.Info.InstanceImage,
		"--set instanceImage.tag=" + tag,
		"--set instanceImage.pullPolicy=Never",
	}, " ")
}

// shellQuote quotes p for a POSIX shell when it needs it, so the printed
// line can be pasted as it is.
func shellQuote(p string) string {
	if p != "" && strings.Trim(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@") == "" {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}
