package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/test/harness"
)

// TestControllerWaitsForControlDBInsteadOfExiting is what happens right
// after `helm install`: the controller pod starts before controldb accepts
// connections. It must wait and carry on once controldb is up, not exit
// and crash-loop.
func TestControllerWaitsForControlDBInsteadOfExiting(t *testing.T) {
	api := harness.StartAPIServer(t)
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	if _, err := pg.Connect(t, "postgres").Exec(ctx, "CREATE DATABASE "+controldb.Database); err != nil {
		t.Fatal(err)
	}
	if err := pg.Server.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	ctrl := startKubeController(t, api, "--runtime", "kubernetes", "--instance-image", "localhost/outpost-instance:test",
		"--controldb-url", pg.URL(controldb.Database)+"&connect_timeout=2")
	waitFor(t, 2*time.Minute, "the controller to say it waits for controldb", func() bool {
		return strings.Contains(ctrl.log(), "controldb is not ready yet")
	})
	// Several retries later it is still running: it has not given up.
	time.Sleep(5 * time.Second)
	select {
	case <-ctrl.done:
		t.Fatalf("the controller exited while controldb was down; log:\n%s", ctrl.log())
	default:
	}

	if err := pg.Server.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the controller to connect once controldb is up", func() bool {
		return strings.Contains(ctrl.log(), "controldb is ready")
	})
	select {
	case <-ctrl.done:
		t.Fatalf("the controller exited after controldb came up; log:\n%s", ctrl.log())
	default:
	}
	if t.Failed() {
		t.Logf("controller log:\n%s", ctrl.log())
	}
}
