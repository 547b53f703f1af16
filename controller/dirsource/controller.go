package dirsource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/manifest"
)

// DefaultResync is how often every manifest is read again even without a
// file event.
const DefaultResync = 10 * time.Second

// Controller reconciles the objects of a manifests directory.
type Controller struct {
	dir       string
	validator *manifest.Validator
	db        *controldb.DB
	instances *controller.InstanceReconciler
	log       *slog.Logger
	resync    time.Duration
	kick      chan struct{}
	synced    chan struct{}
	// reported holds the manifest errors already logged, so each is logged
	// once rather than on every pass.
	reported map[string]bool
	// site, if set, receives the site's DataController (nil when there is
	// none) at the start of every pass, before any instance is reconciled.
	site func(*outpostv1.DataController)
	// featureStores reconciles FeatureStores; nil leaves them unreconciled.
	featureStores *controller.FeatureStoreReconciler
	// backups runs Backups and schedules; nil leaves them unreconciled.
	backups *controller.BackupReconciler
	// applying holds the uids of the PostgresInstances being reconciled
	// and not yet stored (see Applying).
	applying sync.Map
	// accepted holds the objects in force by Key (see Accepted).
	accepted atomic.Pointer[map[string]manifest.Object]
}

// Applying returns the uids of the PostgresInstances a pass is reconciling
// right now: declared, but not in controldb until the reconcile is over
// (a first reconcile runs initdb). Read it before controldb's objects, and
// the two together hold every declared instance.
func (c *Controller) Applying() []string {
	var uids []string
	c.applying.Range(func(k, _ any) bool {
		uids = append(uids, k.(string))
		return true
	})
	return uids
}

// OnSite sets a function that receives the site's DataController at the
// start of every pass, for settings that apply to every instance.
func (c *Controller) OnSite(f func(*outpostv1.DataController)) { c.site = f }

// New returns a controller for the manifests in dir.
func New(dir string, v *manifest.Validator, db *controldb.DB, instances *controller.InstanceReconciler, log *slog.Logger) *Controller {
	return &Controller{
		dir: dir, validator: v, db: db, instances: instances, log: log,
		resync:   DefaultResync,
		kick:     make(chan struct{}, 1),
		synced:   make(chan struct{}),
		reported: map[string]bool{},
	}
}

// Kick asks for a pass as soon as possible, for example when a server the
// runtime supervises changes state.
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Synced is closed once the first pass is over: from then on the status in
// controldb is this controller's, not what a previous one left behind.
func (c *Controller) Synced() <-chan struct{} { return c.synced }

// Run reconciles until ctx ends: after every change in the directory, when
// an object asked to be looked at again, and at least every resync period.
func (c *Controller) Run(ctx context.Context) error {
	if err := watch(ctx, c.dir, c.kick); err != nil {
		return err
	}
	for first := true; ; first = false {
		wait := c.pass(ctx)
		if first {
			close(c.synced)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		case <-time.After(wait):
		}
	}
}

// pass reads every manifest, reconciles every object, removes the objects
// whose manifests are gone, and returns how soon to come back.
func (c *Controller) pass(ctx context.Context) time.Duration {
	next := c.resync
	recs, err := c.db.Objects(ctx, "")
	if err != nil {
		c.log.Error("cannot read controller state", "err", err)
		return requeueOnError
	}
	byKey := make(map[string]controldb.Record, len(recs))
	for _, r := range recs {
		byKey[recordKey(r)] = r
	}
	olds := func(key string) *unstructured.Unstructured {
		r, ok := byKey[key]
		if !ok {
			return nil
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(r.Object); err != nil {
			return nil
		}
		return u
	}

	d, err := Read(ctx, c.dir, c.validator, olds)
	if err != nil {
		c.log.Error("cannot read manifests", "dir", c.dir, "err", err)
		return requeueOnError
	}
	c.reportErrors(ctx, d.Errors)
	c.accept(d, recs)
	if c.site != nil {
		c.site(siteOf(d, recs, c.log))
	}

	keys := make([]string, 0, len(d.Objects))
	for k := range d.Objects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rec, existed := byKey[k]
		requeue, err := c.apply(ctx, d.Objects[k], rec, existed)
		if err != nil {
			c.log.Error("reconcile failed", "object", k, "err", err)
			requeue = requeueOnError
		}
		if requeue > 0 && requeue < next {
			next = requeue
		}
	}

	// In key order, which is kind order: a FeatureStore whose manifest
	// went with its instance's drops its tables (deletionPolicy Delete)
	// before the instance stops.
	gone := make([]string, 0, len(byKey))
	for k := range byKey {
		if _, ok := d.Objects[k]; !ok {
			gone = append(gone, k)
		}
	}
	sort.Strings(gone)
	for _, k := range gone {
		rec := byKey[k]
		if d.Troubled[rec.SourceFile] {
			// Its file cannot be read right now (a half-saved edit, a
			// typo); deleting what it described would lose data.
			continue
		}
		if err := c.remove(ctx, rec); err != nil {
			c.log.Error("delete failed", "object", k, "err", err)
			next = min(next, requeueOnError)
		}
	}
	return next
}

const requeueOnError = 5 * time.Second

// siteOf is the site's DataController: the one the manifests declare, or,
// while the file that declared it cannot be read (a half-saved edit, a
// typo), the last one accepted from it, exactly as other kinds keep theirs.
// Otherwise a broken site.yaml would move every instance back to 127.0.0.1
// and turn direct mode off.
func siteOf(d Desired, stored []controldb.Record, log *slog.Logger) *outpostv1.DataController {
	if d.DataController != nil {
		return d.DataController
	}
	for _, r := range stored {
		if r.Kind != outpostv1.KindDataController || !d.Troubled[r.SourceFile] {
			continue
		}
		dc := &outpostv1.DataController{}
		if err := json.Unmarshal(r.Object, dc); err != nil {
			log.Error("stored DataController cannot be read", "name", r.Namespace+"/"+r.Name, "err", err)
			return nil
		}
		return dc
	}
	return nil
}

func recordKey(r controldb.Record) string { return r.Kind + "/" + r.Namespace + "/" + r.Name }

// apply gives obj the identity an apiserver would (uid, generation,
// creationTimestamp), reconciles it, and stores it with its status.
func (c *Controller) apply(ctx context.Context, obj manifest.Object, rec controldb.Record, existed bool) (time.Duration, error) {
	u := obj.Unstructured.DeepCopy()
	hash, err := specHash(u)
	if err != nil {
		return 0, err
	}
	uid, generation, created := string(uuid.NewUUID()), int64(1), metav1.Now()
	var stored map[string]any
	if existed {
		uid, generation, created = rec.UID, rec.Generation, metav1.NewTime(rec.CreatedAt)
		if rec.SpecHash != hash {
			generation++
		}
		if err := json.Unmarshal(rec.Object, &stored); err != nil {
			return 0, fmt.Errorf("stored state of %s: %w", obj.Key(), err)
		}
	}
	u.SetUID(k8stypes.UID(uid))
	u.SetGeneration(generation)
	u.SetCreationTimestamp(created)
	if status, ok := stored["status"]; ok {
		u.Object["status"] = status
	}

	var requeue time.Duration
	var object any = u.Object
	if obj.Kind() == outpostv1.KindPostgresInstance {
		// Until it is stored below (when apply returns).
		c.applying.Store(uid, nil)
		defer c.applying.Delete(uid)
		inst := &outpostv1.PostgresInstance{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, inst); err != nil {
			return 0, fmt.Errorf("%s: %w", obj.Key(), err)
		}
		requeue = c.instances.Reconcile(ctx, inst)
		object = inst
		if c.backups != nil {
			c.backups.ObserveInstance(inst)
			// The Backup file is written before the instance's status
			// (below) records its slot as taken; see Schedule.
			before := inst.Status.Backups.DeepCopy()
			if b := c.backups.Schedule(inst); b != nil {
				if err := c.writeScheduledBackup(b); err != nil {
					controller.Unschedule(inst, before)
					c.log.Error("cannot create scheduled Backup", "instance", obj.Key(), "backup", b.Name, "err", err)
				} else {
					requeue = time.Millisecond
				}
			}
		}
	}
	if obj.Kind() == outpostv1.KindBackup && c.backups != nil {
		if object, requeue, err = c.reconcileBackup(ctx, u, obj.Key(), obj.File); err != nil {
			return 0, err
		}
	}
	if obj.Kind() == outpostv1.KindFeatureStore && c.featureStores != nil {
		fs := &outpostv1.FeatureStore{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, fs); err != nil {
			return 0, fmt.Errorf("%s: %w", obj.Key(), err)
		}
		// An index build publishes its progress as it goes, so that
		// `outpost get` shows it while the reconcile waits.
		requeue = c.featureStores.ReconcileWithProgress(ctx, fs, func(fs *outpostv1.FeatureStore) {
			if b, err := json.Marshal(fs); err == nil {
				err = c.db.PutObject(ctx, controldb.Record{
					Kind: obj.Kind(), Namespace: obj.Namespace(), Name: obj.Name(),
					UID: uid, Generation: generation, SpecHash: hash, SourceFile: obj.File, Object: b,
				})
				if err != nil {
					c.log.Error("store index build progress", "object", obj.Key(), "err", err)
				}
			}
		})
		object = fs
	}
	b, err := json.Marshal(object)
	if err != nil {
		return 0, err
	}
	rec = controldb.Record{
		Kind: obj.Kind(), Namespace: obj.Namespace(), Name: obj.Name(),
		UID: uid, Generation: generation, SpecHash: hash, SourceFile: obj.File, Object: b,
	}
	if statusOwnedElsewhere[obj.Kind()] {
		return requeue, c.db.PutObjectKeepStatus(ctx, rec)
	}
	return requeue, c.db.PutObject(ctx, rec)
}

// statusOwnedElsewhere are the kinds whose status no pass computes: another
// loop writes it while passes run (the DataController's usage status, every
// metering interval). A pass stores their spec and leaves their status as it
// is in controldb at that moment; writing back the status it read at the
// start of the pass would undo an update made in between.
var statusOwnedElsewhere = map[string]bool{outpostv1.KindDataController: true}

// remove deletes an object whose manifest is gone, after the runtime has
// stopped what it ran.
func (c *Controller) remove(ctx context.Context, rec controldb.Record) error {
	if rec.Kind == outpostv1.KindFeatureStore && c.featureStores != nil {
		fs := &outpostv1.FeatureStore{}
		if err := json.Unmarshal(rec.Object, fs); err != nil {
			return fmt.Errorf("stored state: %w", err)
		}
		if err := c.featureStores.Delete(ctx, fs); err != nil {
			return err
		}
	}
	if rec.Kind == outpostv1.KindPostgresInstance {
		inst := &outpostv1.PostgresInstance{}
		if err := json.Unmarshal(rec.Object, inst); err != nil {
			return fmt.Errorf("stored state: %w", err)
		}
		if err := c.instances.Delete(ctx, inst); err != nil {
			return err
		}
	}
	c.log.Info("deleted", "object", recordKey(rec), "file", rec.SourceFile)
	return c.db.DeleteObject(ctx, rec.Kind, rec.Namespace, rec.Name)
}

// reportErrors stores the current manifest errors for `outpost get` and logs
// each new one once.
func (c *Controller) reportErrors(ctx context.Context, errs []*manifest.Error) {
	rows := make([]controldb.ManifestError, len(errs))
	current := map[string]bool{}
	for i, e := range errs {
		rows[i] = controldb.ManifestError{File: e.File, Message: e.Error()}
		current[e.Error()] = true
		if !c.reported[e.Error()] {
			c.log.Warn("manifest rejected", "file", e.File, "field", e.Field, "reason", e.Reason)
		}
	}
	c.reported = current
	if err := c.db.SetManifestErrors(ctx, rows); err != nil {
		c.log.Error("cannot store manifest errors", "err", err)
	}
}

// specHash identifies a spec: the generation goes up when it changes.
func specHash(u *unstructured.Unstructured) (string, error) {
	b, err := json.Marshal(u.Object["spec"])
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
