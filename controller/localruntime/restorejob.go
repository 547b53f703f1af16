package localruntime

import (
	"context"
	"fmt"
	"time"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/postgres"
)

// restoreJob is a restore running in the background. A restore downloads a
// whole base backup and replays WAL, which takes minutes; it runs outside
// the runtime's lock and outside the reconcile pass, so every other
// instance keeps being reconciled meanwhile.
type restoreJob struct {
	cancel   context.CancelFunc
	done     chan struct{}
	started  time.Time
	finished time.Time
	err      error
}

// restoreRetry is how long a failed restore's error stands in the status
// before the next attempt: long enough to read it, and a restore that
// cannot succeed (no key, no backup) does not download the backup again
// on every pass.
const restoreRetry = 30 * time.Second

// restoringError says a restore of the instance is still running.
type restoringError struct{ since time.Time }

func (e *restoringError) Error() string {
	return fmt.Sprintf("restoring from a backup since %s", e.since.UTC().Format(time.RFC3339))
}

// restoreInBackground starts the restore spec.bootstrap.recovery asks for
// or looks at the one running: it returns a *restoringError while it runs,
// the restore's error for restoreRetry after it failed (then the next call
// starts another), and nil when the data directory is restored. r.mu is
// held.
func (r *Runtime) restoreInBackground(inst *outpostv1.PostgresInstance, dir string, srv *postgres.Server) error {
	key := inst.Namespace + "/" + inst.Name
	if job, ok := r.restores[key]; ok {
		select {
		case <-job.done:
		default:
			return &restoringError{since: job.started}
		}
		if job.err == nil {
			delete(r.restores, key)
			return nil
		}
		if time.Since(job.finished) < restoreRetry {
			return job.err
		}
		delete(r.restores, key)
	}
	if err := checkFreeSpace(dir, inst.Spec.Storage.Size.Value()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	job := &restoreJob{cancel: cancel, done: make(chan struct{}), started: time.Now()}
	if r.restores == nil {
		r.restores = map[string]*restoreJob{}
	}
	r.restores[key] = job
	inst = inst.DeepCopy()
	r.Log.Info("restoring instance from a backup", "instance", key, "source", inst.Spec.Bootstrap.Recovery.Source)
	go func() {
		defer close(job.done)
		defer cancel()
		job.err = r.restore(ctx, inst, dir, srv)
		if job.err == nil {
			job.err = srv.WriteConfig(controller.DesiredServerSettings(inst).Parameters)
		}
		job.finished = time.Now()
		if job.err != nil {
			r.Log.Error("restore failed", "instance", key, "err", job.err)
		}
		if r.OnChange != nil {
			r.OnChange()
		}
	}()
	return &restoringError{since: job.started}
}

// stopRestore cancels the restore of key, if one runs, and waits for it.
func (r *Runtime) stopRestore(key string) {
	r.mu.Lock()
	job, ok := r.restores[key]
	delete(r.restores, key)
	r.mu.Unlock()
	if ok {
		job.cancel()
		<-job.done
	}
}
