package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// containerd is Debian's containerd, run inside the node's namespace with
// its own root, state and socket, so it shares nothing with any other
// containerd on the machine. Its root (content and unpacked snapshots)
// lives on in the tools cache, one per network slot, so a warm start does
// not import and unpack the images again.
type containerd struct {
	Root, State, Socket string
	proc                *harness.Process
}

// k8sNamespace is containerd's namespace for the CRI (kubelet's) objects.
const k8sNamespace = "k8s.io"

func newContainerd(runDir string, n *network) *containerd {
	return &containerd{
		Root:   filepath.Join(harness.ToolsBin(), "..", "cluster", n.Name, "containerd"),
		State:  filepath.Join(runDir, "containerd"),
		Socket: filepath.Join(runDir, "containerd", "containerd.sock"),
	}
}

// config is containerd's configuration (version 2, containerd 1.6). Each
// setting that is not a default is needed here:
//   - restrict_oom_score_adj: the sandbox has no CAP_SYS_RESOURCE, so runc
//     cannot lower a process's oom_score_adj; without this every pod
//     sandbox fails with "can't get final child's PID from pipe: EOF".
//   - SystemdCgroup false: no systemd; kubelet uses the cgroupfs driver.
//   - netns_mounts_under_state_dir and runc's Root: keep pod namespaces and
//     runc's state under this run's directory, not /run.
//   - sandbox_image: the project's pause image, imported, never pulled.
func (c *containerd) config(runDir string) string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, c.Root, c.State, c.Socket, filepath.Join(c.Root, "opt"), PauseImage,
		filepath.Join(runDir, "runc"), cniDir, filepath.Join(runDir, "cni"))
}

// cniConfig is the node's pod network: Debian's bridge plugin with a
// fixed subnet (no node IPAM), the bridge the pods' gateway, and portmap
// for hostPort.
func cniConfig(n *network, runDir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "outpost-test",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "subnet": %q, "gateway": %q, "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.PodCIDR.String(), n.PodGateway().String(), filepath.Join(runDir, "cni-ipam"))
}

func (c *containerd) start(runDir string, n *network) error {
	for _, d := range []string{c.Root, c.State, filepath.Join(runDir, "cni"), filepath.Join(runDir, "runc")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("containerd: %w", err)
		}
	}
	configPath := filepath.Join(runDir, "containerd.toml")
	if err := os.WriteFile(configPath, []byte(c.config(runDir)), 0o644); err != nil {
		return fmt.Errorf("containerd config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(runDir, "cni", "10-outpost.conflist"), []byte(cniConfig(n, runDir)), 0o644); err != nil {
		return fmt.Errorf("CNI config: %w", err)
	}
	p, err := harness.StartProcess("containerd", runDir, n.Command("/usr/bin/containerd", "--config", configPath))
	if err != nil {
		return err
	}
	c.proc = p
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.ctr("version"); err == nil {
			return nil
		} else if p.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("containerd did not start: %v; last log lines:\n%s", err, p.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ctr runs Debian's ctr against this containerd, in the CRI namespace.
func (c *containerd) ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/ctr", append([]string{"--address", c.Socket, "--namespace", k8sNamespace}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// removeContainers deletes every container and task in the CRI namespace:
// what a previous run left when it was killed, or this run's pods at
// teardown once their processes are gone. Images stay.
func (c *containerd) removeContainers() error {
	out, err := c.ctr("containers", "list", "--quiet")
	if err != nil {
		return err
	}
	ids := strings.Fields(out)
	for _, id := range ids {
		// A container without a task has nothing to delete; the error says so.
		c.ctr("tasks", "delete", "--force", id)
	}
	if len(ids) == 0 {
		return nil
	}
	_, err = c.ctr(append([]string{"containers", "delete"}, ids...)...)
	return err
}

// ImportImage loads a docker-archive or OCI tarball into the CRI
// namespace, unpacked for the overlayfs snapshotter.
func (c *containerd) importImage(path string) error {
	if _, err := c.ctr("images", "import", "--snapshotter", "overlayfs", path); err != nil {
		return fmt.Errorf("import image %s: %w", path, err)
	}
	return nil
}

// tag gives an image a second name, as a new release's image would have
// one, without a second import.
func (c *containerd) tag(src, dst string) error {
	if _, err := c.ctr("images", "tag", "--force", src, dst); err != nil {
		return fmt.Errorf("tag image %s as %s: %w", src, dst, err)
	}
	return nil
}
