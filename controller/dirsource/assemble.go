package dirsource

import (
	"log/slog"

	"github.com/outpostdata/outpost/controller"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/manifest"
)

// Assembly is what a directory controller is made of: the source (a
// manifests directory, its validator and controldb) and a runtime.
type Assembly struct {
	Dir       string
	Validator *manifest.Validator
	DB        *controldb.DB
	Runtime   controller.Runtime
	// Verifier runs spec.backup.verification; nil leaves it Unsupported
	// (see controller.Runtime for why it is not part of the runtime).
	Verifier controller.RestoreVerifier
	// Metrics receives WAL archiving and verification results.
	Metrics *controller.BackupMetrics
	Log     *slog.Logger
}

// Assemble is where the directory source meets a runtime and the core: it
// builds the instance, feature store and backup reconcilers over
// a.Runtime, with events kept in controldb, and the controller that feeds
// them the directory's objects. What the caller builds around the
// controller (the instance lookup of Backups, usage metering, the site's
// settings, the runtime's wake-ups) is set on it before Run; Backups need
// OnInstanceLookup.
func Assemble(a Assembly) *Controller {
	events := &EventRecorder{DB: a.DB, Log: a.Log}
	c := New(a.Dir, a.Validator, a.DB, &controller.InstanceReconciler{Runtime: a.Runtime, Events: events, Metrics: a.Metrics}, a.Log)
	c.featureStores = &controller.FeatureStoreReconciler{Databases: a.Runtime, Events: events}
	c.backups = &controller.BackupReconciler{Runner: a.Runtime, Verifier: a.Verifier, Metrics: a.Metrics, Events: events}
	return c
}

// OnInstanceLookup sets how Backups find the instance they name; it comes
// after Assemble because a lookup may answer from this controller's state.
func (c *Controller) OnInstanceLookup(l controller.InstanceLookup) { c.backups.Instances = l }

// OnUsage meters the instances the controller reconciles; it comes after
// Assemble because a recorder may wait for Synced.
func (c *Controller) OnUsage(u controller.UsageRecorder) { c.instances.Usage = u }
