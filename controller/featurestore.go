package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/postgres"
	"github.com/outpostdata/outpost/vectorstore"
)

// DatabaseLocator finds a database of a running instance: the runtime
// knows where its servers are and holds their superuser credentials.
type DatabaseLocator interface {
	// DatabaseURL returns a superuser connection URI for a database of an
	// instance, creating the database (owned by the application role) if
	// it does not exist. It fails while the instance is not running.
	DatabaseURL(ctx context.Context, namespace, instance, database string) (string, error)
}

// Condition type and reasons of a FeatureStore.
const (
	ConditionIndexReady      = "IndexReady"
	ReasonSchemaReady        = "SchemaReady"
	ReasonInstanceNotReady   = "InstanceNotReady"
	ReasonDimensionsChanged  = "DimensionsChanged"
	ReasonSchemaError        = "SchemaError"
	ReasonTablesNotOwned     = "TablesNotOwned"
	ReasonSerialHNSWBuild    = "SerialHNSWBuild"
	ReasonParallelHNSWBuild  = "ParallelHNSWBuild"
	requeueFeatureStoreReady = time.Minute
)

// FeatureStoreReconciler shapes a FeatureStore's tables, index and
// read-only role in its instance's database with the vectorstore package.
type FeatureStoreReconciler struct {
	Databases DatabaseLocator
	Events    EventRecorder
}

// Reconcile brings one feature store towards its spec, updates fs.Status
// in place, and says when to look again. Failures are conditions.
func (r *FeatureStoreReconciler) Reconcile(ctx context.Context, fs *outpostv1.FeatureStore) time.Duration {
	return r.ReconcileWithProgress(ctx, fs, nil)
}

// ReconcileWithProgress is Reconcile for a source that can store status
// while a reconcile runs: an index build (a rebuild CONCURRENTLY on a large
// table can take hours) calls publish with fs.Status.IndexBuild filled in,
// about once a second, from another goroutine while Reconcile waits.
// publish may be nil.
func (r *FeatureStoreReconciler) ReconcileWithProgress(ctx context.Context, fs *outpostv1.FeatureStore, publish func(*outpostv1.FeatureStore)) time.Duration {
	before := fs.Status.DeepCopy()
	defer func() { r.recordTransitions(fs, before) }()
	fs.Status.ObservedGeneration = fs.Generation

	spec, err := FeatureStoreSpec(fs)
	if err == nil {
		err = spec.Validate()
	}
	if err != nil {
		r.fail(fs, ReasonInvalidSpec, "spec: "+err.Error())
		return 0
	}
	url, err := r.Databases.DatabaseURL(ctx, fs.Namespace, fs.Spec.Instance.Name, fs.Spec.Database)
	if err != nil {
		r.setCondition(fs, outpostv1.ConditionReady, metav1.ConditionFalse, ReasonInstanceNotReady, err.Error())
		fs.Status.Phase = outpostv1.FeatureStorePending
		return requeueError
	}
	if err := ensureVector(ctx, url); err != nil {
		r.fail(fs, ReasonSchemaError, err.Error())
		return requeueError
	}
	pool, err := vectorstore.Connect(ctx, url)
	if err != nil {
		r.fail(fs, ReasonSchemaError, err.Error())
		return requeueError
	}
	defer pool.Close()
	opts := vectorstore.EnsureOptions{UID: string(fs.UID)}
	if publish != nil {
		opts.OnIndexProgress = func(p vectorstore.IndexProgress) {
			fs.Status.IndexState = vectorstore.IndexBuilding
			fs.Status.IndexBuild = &outpostv1.IndexBuildProgress{
				Index: p.Index, Phase: p.Phase, PercentDone: int32(p.Percent()),
				Concurrently: p.Concurrently, Serial: p.SerialHNSW,
			}
			publish(fs)
		}
	}
	store, res, err := vectorstore.Ensure(ctx, pool, spec, opts)
	fs.Status.IndexBuild = nil
	if errors.Is(err, vectorstore.ErrDimensionsChanged) {
		r.fail(fs, ReasonDimensionsChanged, err.Error())
		// Nothing will change until the spec does.
		return 0
	}
	if errors.Is(err, vectorstore.ErrNotOwned) {
		// An application's table, or another store's: never touched. The
		// condition names the table (and the other store).
		r.fail(fs, ReasonTablesNotOwned, err.Error())
		return requeueError
	}
	if err != nil {
		r.fail(fs, ReasonSchemaError, err.Error())
		return requeueError
	}
	if len(res.AddedFeatures) > 0 {
		r.Events.Event(fs, "Normal", "FeaturesAdded", fmt.Sprintf("added feature columns %v", res.AddedFeatures))
	}
	if res.IndexRebuilt {
		r.Events.Event(fs, "Normal", "IndexRebuilt", "index rebuilt CONCURRENTLY with the new parameters")
	}
	if res.TuningError != nil {
		r.Events.Event(fs, "Warning", "SearchDefaultsNotMeasured", res.TuningError.Error()+"; searches keep the defaults they had until the next ingest measures them")
	}
	st, err := store.Stats(ctx)
	if err != nil {
		r.fail(fs, ReasonSchemaError, err.Error())
		return requeueError
	}
	fs.Status.Table = st.Table
	fs.Status.Rows = st.Rows
	fs.Status.IndexState = st.IndexState
	fs.Status.PgvectorVersion = st.PgvectorVersion
	r.setIndexCondition(fs, st)
	r.setCondition(fs, outpostv1.ConditionReady, metav1.ConditionTrue, ReasonSchemaReady, "tables "+st.Table+" and "+st.Table+"_history are in place")
	fs.Status.Phase = outpostv1.FeatureStoreReady
	return requeueFeatureStoreReady
}

// Delete carries out a deleted FeatureStore's deletionPolicy: Retain (the
// default) leaves its tables; Delete drops them. An error (the instance is
// not running, say) means try again later: the tables are still there.
func (r *FeatureStoreReconciler) Delete(ctx context.Context, fs *outpostv1.FeatureStore) error {
	if fs.Spec.DeletionPolicy != outpostv1.DeletionDelete {
		return nil
	}
	url, err := r.Databases.DatabaseURL(ctx, fs.Namespace, fs.Spec.Instance.Name, fs.Spec.Database)
	if err != nil {
		return fmt.Errorf("drop feature store %s/%s: %w", fs.Namespace, fs.Name, err)
	}
	pool, err := vectorstore.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("drop feature store %s/%s: %w", fs.Namespace, fs.Name, err)
	}
	defer pool.Close()
	dropped, err := vectorstore.Drop(ctx, pool, fs.Name)
	if err != nil {
		return err
	}
	if len(dropped) == 0 {
		r.Events.Event(fs, "Normal", "NothingDropped", "deletionPolicy Delete: Outpost created no tables for this feature store, so none were dropped")
		return nil
	}
	r.Events.Event(fs, "Normal", "Dropped", "deletionPolicy Delete: dropped "+strings.Join(dropped, ", "))
	return nil
}

// setIndexCondition says whether the index is usable and, for HNSW, how it
// is built: serially while pgvector is older than 0.8.2 (CVE-2026-3172).
func (r *FeatureStoreReconciler) setIndexCondition(fs *outpostv1.FeatureStore, st vectorstore.Stats) {
	status, reason := metav1.ConditionTrue, "IndexValid"
	msg := "index " + st.IndexState
	switch st.IndexState {
	case vectorstore.IndexNone:
		reason, msg = "NoIndex", "spec.index.type is none: searches scan"
	case vectorstore.IndexValid:
	default:
		status, reason = metav1.ConditionFalse, "Index"+st.IndexState
	}
	if st.IndexType == vectorstore.HNSW {
		if st.ParallelHNSWBuild {
			reason = ReasonParallelHNSWBuild
			msg += "; pgvector " + st.PgvectorVersion + " builds HNSW in parallel safely"
		} else {
			reason = ReasonSerialHNSWBuild
			msg += "; pgvector " + st.PgvectorVersion + " is older than 0.8.2, so HNSW indexes are built serially (CVE-2026-3172)"
		}
	}
	r.setCondition(fs, ConditionIndexReady, status, reason, msg)
}

// ensureVector creates pgvector in the store's database.
func ensureVector(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect to the feature store's database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return postgres.EnsureExtension(ctx, conn, "vector")
}

// FeatureStoreSpec translates the resource's spec into the vectorstore's.
func FeatureStoreSpec(fs *outpostv1.FeatureStore) (vectorstore.Spec, error) {
	s := vectorstore.Spec{
		Name:       fs.Name,
		Dimensions: int(fs.Spec.Dimensions),
		VectorType: vectorstore.VectorType(fs.Spec.VectorType),
		Distance:   vectorstore.Distance(fs.Spec.Distance),
		Index:      vectorstore.Index{Type: vectorstore.IndexType(fs.Spec.Index.Type)},
	}
	if h := fs.Spec.Index.HNSW; h != nil {
		s.Index.M, s.Index.EfConstruction = int(h.M), int(h.EfConstruction)
	}
	if v := fs.Spec.Index.IVFFlat; v != nil {
		s.Index.Lists = int(v.Lists)
	}
	for _, f := range fs.Spec.Features {
		s.Features = append(s.Features, vectorstore.Feature{Name: f.Name, Type: vectorstore.FeatureType(f.Type), Indexed: f.Indexed})
	}
	ret, err := parseRetention(fs.Spec.History.Retention)
	if err != nil {
		return s, fmt.Errorf("history.retention: %w", err)
	}
	s.Retention = ret
	return s, nil
}

// parseRetention reads "30d", "12h" or "2w"; "0d" keeps no history and an
// empty value is the default.
func parseRetention(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := ParseSpecDuration(v)
	if err != nil {
		return 0, err
	}
	if d == 0 {
		return vectorstore.NoHistory, nil
	}
	return d, nil
}

func (r *FeatureStoreReconciler) fail(fs *outpostv1.FeatureStore, reason, msg string) {
	r.setCondition(fs, outpostv1.ConditionReady, metav1.ConditionFalse, reason, msg)
	fs.Status.Phase = outpostv1.FeatureStoreFailed
}

func (r *FeatureStoreReconciler) setCondition(fs *outpostv1.FeatureStore, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&fs.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: fs.Generation,
	})
}

// recordTransitions emits an event when the Ready reason or phase changes.
func (r *FeatureStoreReconciler) recordTransitions(fs *outpostv1.FeatureStore, before *outpostv1.FeatureStoreStatus) {
	RecordReadyTransition(r.Events, fs, before.Conditions, fs.Status.Conditions,
		before.Phase != fs.Status.Phase, fs.Status.Phase == outpostv1.FeatureStoreFailed)
}
