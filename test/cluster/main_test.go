package cluster

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/outpostdata/outpost/bundle/image"
	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/test/harness/cluster"
)

// The run's cluster and the images its bundle carried.
var (
	cl              *cluster.Cluster
	controllerImage = image.ControllerRepository + ":" + imageTag
	instanceImage   = image.InstanceRepository + ":" + imageTag
)

// imageTag is the tag of the images of this run; nextTag names the same
// controller image again, as a new release would (upgrade_test.go).
const (
	imageTag = "test"
	nextTag  = "next"
)

// TestMain builds outpost once, starts one cluster for every test, loads
// the images into it from an air-gap bundle of that binary, and stops the
// cluster at the end. Any failure here
// fails the whole package: a missing binary is never a skip.
func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	ctx := context.Background()
	// envtest logs through controller-runtime; nothing here reads it.
	ctrllog.SetLogger(logr.Discard())
	bin, removeBin, err := harness.BuildOutpost()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer removeBin()
	dir, err := os.MkdirTemp("", "outpost-bundle-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if cl, err = cluster.Start(ctx, cluster.Options{}); err != nil {
		fmt.Fprintf(os.Stderr, "start the test cluster: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "cluster started in %s (node Ready at %s)\n",
		cl.Started.Round(time.Millisecond), cl.NodeReady.Round(time.Millisecond))
	// Everything the tests install comes from an air-gap bundle, the way a
	// site without network access installs Outpost.
	if err := installFromBundle(bin, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		cl.Stop()
		return 1
	}
	code := m.Run()
	if err := cl.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stop the test cluster: %v\n", err)
		code = 1
	}
	fmt.Fprintf(os.Stderr, "cluster stopped in %s\n", cluster.Stopped.Round(time.Millisecond))
	return code
}
