package singlehost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/dirsource"
	"github.com/outpostdata/outpost/controller/localruntime"
	"github.com/outpostdata/outpost/controller/manifest"
)

// UpOptions configure Up.
type UpOptions struct {
	StateDir StateDir
	// FirstPort is where instance port allocation starts; 0 means 5432.
	FirstPort int
	// Out receives messages for the person at the terminal.
	Out io.Writer
	// Log receives the controller's structured log.
	Log *slog.Logger
	// Version is the controller's version, written into usage exports.
	Version string
}

// backupMetrics are this process's WAL archiving and backup verification
// metrics (see controller.BackupMetrics); ServeMetrics serves them.
var backupMetrics = controller.NewBackupMetrics()

// Up runs the single-host data controller until ctx ends: it creates the
// state directory (with an example instance the first time), starts
// controldb, adopts or starts every instance in the manifests directory,
// tells the user how to connect once they are Ready, and keeps reconciling.
// When ctx ends it stops every instance and controldb cleanly.
func Up(ctx context.Context, opts UpOptions) (err error) {
	sd, log := opts.StateDir, opts.Log
	if err := os.MkdirAll(sd.Root, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	lk, err := acquireLock(sd.Root)
	if err != nil {
		return err
	}
	defer lk.release()
	created, err := writeExample(sd.Manifests())
	if err != nil {
		return fmt.Errorf("manifests directory: %w", err)
	}
	if created {
		fmt.Fprintf(opts.Out, "Created %s with an example instance.\n", sd.Manifests())
	}

	validator, err := manifest.NewValidator()
	if err != nil {
		return err
	}
	db, err := controldb.StartLocal(ctx, sd.ControlDB(), log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Stop()) }()

	rt := &localruntime.Runtime{StateDir: sd.Root, Ports: db, FirstPort: opts.FirstPort, Log: log}
	defer func() { err = errors.Join(err, rt.Shutdown()) }()
	usage, err := startUsage(ctx, db.DB, sd, opts.Version, log)
	if err != nil {
		return err
	}
	// The directory source with the local runtime, which also verifies
	// backups by restoring them on this host. Lookups answer from what the
	// source accepted (lookup.go).
	ctrl := dirsource.Assemble(dirsource.Assembly{
		Dir: sd.Manifests(), Validator: validator, DB: db.DB, Log: log,
		Runtime: rt, Verifier: rt, Metrics: backupMetrics,
	})
	accepted := fromSource(ctrl, sd.Manifests())
	rt.ObjectStores = accepted.objectStores()
	ctrl.OnInstanceLookup(accepted.instances())
	ctrl.OnUsage(usage.recorder(ctrl.Synced()))
	usage.applying = ctrl.Applying
	rt.OnChange = ctrl.Kick
	ctrl.OnSite(func(dc *outpostv1.DataController) {
		listen := ""
		if dc != nil {
			listen = dc.Spec.LocalRuntime.ListenAddress
		}
		rt.SetListenAddress(listen)
		usage.setSite(dc)
	})

	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx) }()
	go announceReady(ctx, ctrl.Synced(), db.DB, sd, opts.Out)
	usageDone := make(chan struct{})
	go func() {
		defer close(usageDone)
		// After the first pass, so the site's DataController is known.
		select {
		case <-ctrl.Synced():
			usage.run(ctx)
		case <-ctx.Done():
		}
	}()
	defer func() { <-usageDone }()
	runErr := <-done
	fmt.Fprintln(opts.Out, "Stopping instances and controldb...")
	return runErr
}

// announceReady waits until every instance is Ready and prints how to reach
// each one; if that takes long it says what is still pending.
func announceReady(ctx context.Context, synced <-chan struct{}, db *controldb.DB, sd StateDir, out io.Writer) {
	select {
	case <-synced:
	case <-ctx.Done():
		return
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		instances, err := storedInstances(ctx, db)
		allReady := err == nil && len(instances) > 0
		for _, inst := range instances {
			if inst.Status.Phase != outpostv1.InstanceRunning {
				allReady = false
			}
		}
		if allReady || (time.Now().After(deadline) && err == nil) {
			printConnectionInfo(out, sd, instances)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func printConnectionInfo(out io.Writer, sd StateDir, instances []outpostv1.PostgresInstance) {
	fmt.Fprintf(out, "\nOutpost is running. Manifests: %s\n", sd.Manifests())
	for _, inst := range instances {
		if inst.Status.Phase != outpostv1.InstanceRunning {
			fmt.Fprintf(out, "\n  %s/%s is %s: see `outpost describe pgi/%s`\n", inst.Namespace, inst.Name, inst.Status.Phase, inst.Name)
			continue
		}
		fmt.Fprintf(out, "\n  %s/%s is Ready at %s\n    %s\n", inst.Namespace, inst.Name, inst.Status.Endpoint, PsqlCommandLine(sd, &inst))
	}
	fmt.Fprintln(out, "\nPress Ctrl-C to stop.")
}

// storedInstances returns the PostgresInstances controldb holds, with status.
func storedInstances(ctx context.Context, db *controldb.DB) ([]outpostv1.PostgresInstance, error) {
	recs, err := db.Objects(ctx, "PostgresInstance")
	if err != nil {
		return nil, err
	}
	out := make([]outpostv1.PostgresInstance, 0, len(recs))
	for _, r := range recs {
		var inst outpostv1.PostgresInstance
		if err := json.Unmarshal(r.Object, &inst); err != nil {
			return nil, fmt.Errorf("stored %s/%s: %w", r.Namespace, r.Name, err)
		}
		out = append(out, inst)
	}
	return out, nil
}
