package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// chartDir is the chart as the run's bundle carried it.
var chartDir string

// installFromBundle makes a bundle with `outpost bundle create` (both
// images, the chart, the binary, signed), then imports it into the node's
// containerd with `outpost bundle import`, pinned to the signer's public
// key, and keeps the chart it extracted for the tests to install.
func installFromBundle(bin, dir string) error {
	run := func(args ...string) (string, error) {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("outpost %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	file := filepath.Join(dir, "outpost-bundle.tar")
	began := time.Now()
	out, err := run("bundle", "create", "-o", file, "--tag", imageTag, "--signing-key", filepath.Join(dir, "bundle.key"))
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`--public-key (\S+)`).FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("outpost bundle create printed no public key to verify with:\n%s", out)
	}
	created := time.Since(began)
	extracted := filepath.Join(dir, "outpost-bundle")
	out, err = run("bundle", "import", file, "--public-key", m[1], "--dir", extracted, "--containerd-address", cl.ContainerdAddress())
	if err != nil {
		return err
	}
	// The line a user copies must install these images from the node,
	// never pulling them.
	for _, want := range []string{filepath.Join(extracted, "chart", "outpost"), "pullPolicy=Never", controllerImage[:strings.LastIndex(controllerImage, ":")]} {
		if !strings.Contains(out, want) {
			return fmt.Errorf("outpost bundle import printed no %q in its helm line:\n%s", want, out)
		}
	}
	chartDir = filepath.Join(extracted, "chart", "outpost")
	if _, err := os.Stat(filepath.Join(chartDir, "Chart.yaml")); err != nil {
		return fmt.Errorf("the imported bundle holds no chart: %w", err)
	}
	fmt.Fprintf(os.Stderr, "bundle created in %s, imported in %s\n", created.Round(time.Millisecond), (time.Since(began) - created).Round(time.Millisecond))
	return nil
}
