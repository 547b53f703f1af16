package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outpostdata/outpost/backup"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// BackupRunner makes base backups and applies retention where an instance
// runs; the runtime knows where its data and object store are.
type BackupRunner interface {
	// RunBackup backs the instance up, full or incremental (typ, "" being
	// full; backup.TypeIncrementalOrFull for a scheduled incremental one,
	// see runType), and blocks until the backup is completed or failed. onStart
	// receives the backup ID once known.
	RunBackup(ctx context.Context, inst *outpostv1.PostgresInstance, typ outpostv1.BackupType, onStart func(id string)) (*backup.Manifest, string, error)
	// ApplyRetention deletes what the instance's retention policy no
	// longer keeps.
	ApplyRetention(ctx context.Context, inst *outpostv1.PostgresInstance, now time.Time) (*backup.RetentionResult, error)
}

// InstanceLookup finds a PostgresInstance by namespace and name.
type InstanceLookup func(ctx context.Context, namespace, name string) (*outpostv1.PostgresInstance, error)

// Condition reasons of a Backup.
const (
	ReasonBackupRunning     = "Running"
	ReasonBackupCompleted   = "Completed"
	ReasonBackupFailed      = "Failed"
	ReasonBackupWaiting     = "WaitingForOtherBackup"
	ReasonBackupInterrupted = "Interrupted"
	// ReasonFullInsteadOfIncremental is the warning of a scheduled
	// incremental backup that nothing could be the parent of, made full.
	ReasonFullInsteadOfIncremental = "FullInsteadOfIncremental"
	requeueBackupRunning           = 2 * time.Second
)

// cronParser takes 5 fields as people write them, 6 with seconds, and
// descriptors such as @daily.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses spec.backup.schedule; the error names the field.
func ParseSchedule(expr string) (cron.Schedule, error) {
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("spec.backup.schedule %q: %v", expr, err)
	}
	return s, nil
}

// checkBackupSpec re-checks what backups rely on.
func checkBackupSpec(spec *outpostv1.PostgresInstanceSpec) error {
	if spec.Backup == nil {
		return nil
	}
	if spec.Backup.Schedule != "" {
		if _, err := ParseSchedule(spec.Backup.Schedule); err != nil {
			return err
		}
	}
	if e := spec.Backup.IncrementalSchedule; e != "" {
		if _, err := cronParser.Parse(e); err != nil {
			return fmt.Errorf("spec.backup.incrementalSchedule %q: %v", e, err)
		}
	}
	if _, err := RetentionOf(spec.Backup.Retention); err != nil {
		return err
	}
	if v := spec.Backup.Verification; v != nil {
		if _, err := cronParser.Parse(v.Schedule); err != nil {
			return fmt.Errorf("spec.backup.verification.schedule %q: %v", v.Schedule, err)
		}
	}
	return nil
}

// RetentionOf turns the spec's retention into the backup package's.
func RetentionOf(r outpostv1.RetentionPolicy) (backup.RetentionPolicy, error) {
	if r.Count != nil {
		return backup.RetentionPolicy{Count: int(*r.Count)}, nil
	}
	w := r.RecoveryWindow
	if w == "" {
		w = "7d"
	}
	window, err := ParseSpecDuration(w)
	if err != nil {
		return backup.RetentionPolicy{}, fmt.Errorf("spec.backup.retention.recoveryWindow %w", err)
	}
	if window <= 0 {
		return backup.RetentionPolicy{}, fmt.Errorf("spec.backup.retention.recoveryWindow %q: must be more than zero", w)
	}
	return backup.RetentionPolicy{Window: window}, nil
}

// BackupReconciler runs Backups: each one once, at most one per instance at
// a time, in the background, with its progress in the status.
type BackupReconciler struct {
	Runner    BackupRunner
	Instances InstanceLookup
	Events    EventRecorder
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Verifier, when set, runs spec.backup.verification (see
	// observeVerification); without it the schedule is ignored.
	Verifier RestoreVerifier
	// Metrics, when set, receives verification results.
	Metrics *BackupMetrics

	mu   sync.Mutex
	jobs map[string]*backupJob // by Backup namespace/name
	busy map[string]string     // instance namespace/name -> Backup name
	// done holds, per instance, what the last completed backup changed in
	// the instance's status.
	done map[string]instanceBackups
	// expired holds the IDs of backups retention deleted, by instance.
	expired map[string]map[string]bool
	// verifying holds the running verification of each instance.
	verifying map[string]*verifyJob
}

type backupJob struct {
	instance string
	done     chan struct{}
	id       string
	manifest *backup.Manifest
	location string
	retained *backup.RetentionResult
	err      error
}

// instanceBackups is what PostgresInstance status says about backups.
type instanceBackups struct {
	last      string
	lastTime  time.Time
	firstTime time.Time
}

func (r *BackupReconciler) init() {
	if r.jobs == nil {
		r.jobs, r.busy = map[string]*backupJob{}, map[string]string{}
		r.done, r.expired = map[string]instanceBackups{}, map[string]map[string]bool{}
		r.verifying = map[string]*verifyJob{}
	}
}

func (r *BackupReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile moves one Backup along: Pending until its instance is free,
// Running while the backup runs, then Completed or Failed for good.
func (r *BackupReconciler) Reconcile(ctx context.Context, b *outpostv1.Backup) time.Duration {
	b.Status.ObservedGeneration = b.Generation
	if b.Status.Phase == outpostv1.BackupCompleted || b.Status.Phase == outpostv1.BackupFailed {
		return 0
	}
	key := b.Namespace + "/" + b.Name
	instKey := b.Namespace + "/" + b.Spec.Instance.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	job := r.jobs[key]
	if job == nil {
		if b.Status.Phase == outpostv1.BackupRunning {
			// Operator-restart guard: a backup this process did not start
			// was cut short by a restart. It has no manifest, so it never
			// counts as completed; retention removes its objects.
			r.finish(b, outpostv1.BackupFailed, ReasonBackupInterrupted, "the controller stopped during the backup; create a new Backup")
			return 0
		}
		inst, err := r.Instances(ctx, b.Namespace, b.Spec.Instance.Name)
		if err == nil && inst.Spec.Backup == nil {
			err = fmt.Errorf("PostgresInstance %s has no spec.backup", b.Spec.Instance.Name)
		}
		if err != nil {
			r.finish(b, outpostv1.BackupFailed, ReasonBackupFailed, err.Error())
			return 0
		}
		if other, ok := r.busy[instKey]; ok {
			b.Status.Phase = outpostv1.BackupPending
			r.setCondition(b, metav1.ConditionFalse, ReasonBackupWaiting, "waiting for backup "+other+" of the same instance to finish")
			return requeueBackupRunning
		}
		job = r.start(key, instKey, b.Name, runType(b), inst)
		now := metav1.NewTime(r.now())
		b.Status.Phase, b.Status.StartedAt = outpostv1.BackupRunning, &now
		r.setCondition(b, metav1.ConditionFalse, ReasonBackupRunning, "backing up "+b.Spec.Instance.Name)
		r.Events.Event(b, "Normal", ReasonBackupRunning, "backup of "+b.Spec.Instance.Name+" started")
		return requeueBackupRunning
	}
	select {
	case <-job.done:
	default:
		b.Status.BackupID = job.id
		return requeueBackupRunning
	}
	delete(r.jobs, key)
	if job.err != nil {
		r.finish(b, outpostv1.BackupFailed, ReasonBackupFailed, job.err.Error())
		return 0
	}
	m := job.manifest
	b.Status.BackupID, b.Status.StartLSN, b.Status.StopLSN = m.ID, m.StartLSN, m.StopLSN
	b.Status.SizeBytes, b.Status.Location, b.Status.Encrypted = m.StoredBytes, job.location, m.Encrypted
	b.Status.Type, b.Status.Parent = outpostv1.BackupType(m.TypeName()), m.Parent
	started := metav1.NewTime(m.StartTime)
	b.Status.StartedAt = &started
	msg := fmt.Sprintf("backup %s: %d bytes read, %d stored", m.ID, m.SourceBytes, m.StoredBytes)
	if m.FullBecause != "" {
		msg = fmt.Sprintf("full backup %s instead of an incremental one (%s): %d bytes read, %d stored", m.ID, m.FullBecause, m.SourceBytes, m.StoredBytes)
		r.Events.Event(b, corev1.EventTypeWarning, ReasonFullInsteadOfIncremental, msg)
	}
	r.finish(b, outpostv1.BackupCompleted, ReasonBackupCompleted, msg)
	stopped := metav1.NewTime(m.StopTime)
	b.Status.StoppedAt = &stopped
	ib := instanceBackups{last: b.Name, lastTime: m.StopTime}
	if job.retained != nil {
		ib.firstTime = job.retained.FirstRecoverabilityPoint
	}
	r.done[instKey] = ib
	if job.retained != nil && len(job.retained.DeletedBackups) > 0 {
		if r.expired[instKey] == nil {
			r.expired[instKey] = map[string]bool{}
		}
		for _, id := range job.retained.DeletedBackups {
			r.expired[instKey][id] = true
		}
	}
	return 0
}

// Expired reports whether b is a Backup that a schedule created and whose
// backup retention has since deleted from the object store: the source
// removes such Backups, so scheduled ones do not pile up and none claims a
// backup that no longer exists. Backups people created stay, marked by
// nothing but their history.
func (r *BackupReconciler) Expired(b *outpostv1.Backup) bool {
	if b.Labels[LabelScheduledBy] == "" || b.Status.Phase != outpostv1.BackupCompleted {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.expired[b.Namespace+"/"+b.Spec.Instance.Name][b.Status.BackupID]
}

// runType is the type of backup to ask the runtime for. A scheduled
// incremental backup that nothing can be the parent of (none made yet, a
// broken chain, a restore since) is made full: failing it would leave the
// instance without a new backup until the full schedule's next slot, days
// away. One a person asked for fails and says why.
func runType(b *outpostv1.Backup) outpostv1.BackupType {
	if b.Spec.Type == outpostv1.BackupIncremental && b.Labels[LabelScheduledBy] != "" {
		return outpostv1.BackupType(backup.TypeIncrementalOrFull)
	}
	return b.Spec.Type
}

// start runs a backup in the background; r.mu is held.
func (r *BackupReconciler) start(key, instKey, name string, typ outpostv1.BackupType, inst *outpostv1.PostgresInstance) *backupJob {
	job := &backupJob{instance: instKey, done: make(chan struct{})}
	r.jobs[key] = job
	r.busy[instKey] = name
	go func() {
		m, loc, err := r.Runner.RunBackup(context.Background(), inst, typ, func(id string) {
			r.mu.Lock()
			job.id = id
			r.mu.Unlock()
		})
		var kept *backup.RetentionResult
		if err == nil {
			kept, err = r.retain(inst)
		}
		r.mu.Lock()
		job.manifest, job.location, job.retained, job.err = m, loc, kept, err
		delete(r.busy, instKey)
		r.mu.Unlock()
		close(job.done)
	}()
	return job
}

// ObserveInstance writes what this controller's completed Backups of inst
// found into its status: lastBackup, lastBackupTime and
// firstRecoverabilityPoint. An instance none completed for since this
// controller started keeps what its status said. It also runs the
// instance's scheduled verifications (lastVerification and the
// BackupVerified condition).
func (r *BackupReconciler) ObserveInstance(inst *outpostv1.PostgresInstance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	r.observeVerification(inst)
	ib, ok := r.done[inst.Namespace+"/"+inst.Name]
	if !ok {
		return
	}
	last := metav1.NewTime(ib.lastTime)
	inst.Status.LastBackup, inst.Status.LastBackupTime = ib.last, &last
	if !ib.firstTime.IsZero() {
		first := metav1.NewTime(ib.firstTime)
		inst.Status.FirstRecoverabilityPoint = &first
	}
}

func (r *BackupReconciler) retain(inst *outpostv1.PostgresInstance) (*backup.RetentionResult, error) {
	res, err := r.Runner.ApplyRetention(context.Background(), inst, r.now())
	if err != nil {
		return nil, fmt.Errorf("the backup completed, but retention failed: %w", err)
	}
	return res, nil
}

// LabelScheduledBy marks the Backups a schedule created with the name of
// their instance.
const LabelScheduledBy = "outpost.dev/scheduled-by"

// Schedule returns the Backup to create when one of inst's cron schedules
// (spec.backup.schedule for full backups, incrementalSchedule for
// incremental ones) has a slot due, or nil; the source creates it, so
// scheduled backups are ordinary Backups that `get backups` lists and that
// run through Reconcile. It is called on every pass over the instance.
//
// Schedules are level-based, as CloudNativePG's are: what a schedule has
// done lives in inst's status (status.backups.lastScheduleTime and
// lastIncrementalScheduleTime, which Schedule sets and the source writes),
// and the Backup is named after its slot, the time the cron expression
// named (db-full-20261130t020000z). So a controller restart neither runs
// a slot again nor skips one: a slot whose Backup was created but whose
// status write was lost gives the same name again, and the source's
// create of an existing name changes nothing. The source must create the
// Backup before it writes the status.
//
// Only the newest due slot runs: a controller that was down through
// several slots makes one backup, not a burst. The first pass over a
// schedule without a recorded slot records the current time and makes
// nothing, so adding a schedule or upgrading from a controller without
// these fields does not start a backup at once. No slot is taken while a
// backup of the instance runs here; the newest slot due then is taken
// when it is free. Nothing else is remembered between passes: a pass that
// sees the status from before the slot was recorded (a cache behind, say)
// names the same Backup again. When both schedules are due, the full
// backup is made and counts for the incremental slot too.
func (r *BackupReconciler) Schedule(inst *outpostv1.PostgresInstance) *outpostv1.Backup {
	if inst.Spec.Backup == nil || inst.Status.Phase != outpostv1.InstanceRunning {
		return nil
	}
	if inst.Spec.Backup.Schedule == "" && inst.Spec.Backup.IncrementalSchedule == "" {
		return nil
	}
	if inst.Status.Backups == nil {
		inst.Status.Backups = &outpostv1.BackupScheduleStatus{}
	}
	st := inst.Status.Backups
	schedules := []struct {
		expr string
		typ  outpostv1.BackupType
		last **metav1.Time
	}{
		{inst.Spec.Backup.Schedule, outpostv1.BackupFull, &st.LastScheduleTime},
		{inst.Spec.Backup.IncrementalSchedule, outpostv1.BackupIncremental, &st.LastIncrementalScheduleTime},
	}
	now := r.now()
	type slot struct {
		last **metav1.Time
		at   time.Time
	}
	var due []slot
	var typ outpostv1.BackupType
	var expr string
	var at time.Time
	for _, sc := range schedules {
		if sc.expr == "" {
			continue
		}
		sched, err := cronParser.Parse(sc.expr)
		if err != nil {
			continue
		}
		if *sc.last == nil || r.clockWentBack(inst, *sc.last, now, "the "+string(sc.typ)+" backup schedule") {
			anchor := metav1.NewTime(now.Truncate(time.Second))
			*sc.last = &anchor
			continue
		}
		s, ok := DueSlot(sched, (*sc.last).Time, now)
		if !ok {
			continue
		}
		due = append(due, slot{sc.last, s})
		if typ == "" {
			typ, expr, at = sc.typ, sc.expr, s
		}
	}
	if len(due) == 0 {
		return nil
	}
	instKey := inst.Namespace + "/" + inst.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	if _, running := r.busy[instKey]; running {
		return nil
	}
	for _, d := range due {
		t := metav1.NewTime(d.at)
		*d.last = &t
	}
	b := &outpostv1.Backup{}
	b.APIVersion, b.Kind = outpostv1.GroupVersion.String(), outpostv1.KindBackup
	b.Namespace, b.Name = inst.Namespace, ScheduledBackupName(inst.Name, typ, at)
	b.Labels = map[string]string{LabelScheduledBy: inst.Name}
	b.Spec.Instance.Name = inst.Name
	b.Spec.Type = typ
	r.Events.Event(inst, "Normal", "ScheduledBackup", "schedule "+expr+" created "+string(typ)+" Backup "+b.Name+" for its slot "+at.UTC().Format(time.RFC3339))
	return b
}

// Unschedule takes back what Schedule did when the source could not
// create the Backup it returned: the slots of inst's backup schedules go back to before (the
// status.backups Schedule was given), so they are not recorded as taken
// and a later pass tries again.
func Unschedule(inst *outpostv1.PostgresInstance, before *outpostv1.BackupScheduleStatus) {
	st := inst.Status.Backups
	if st == nil {
		return
	}
	if before == nil {
		before = &outpostv1.BackupScheduleStatus{}
	}
	st.LastScheduleTime, st.LastIncrementalScheduleTime = before.LastScheduleTime, before.LastIncrementalScheduleTime
}

// ScheduledBackupName is the name of the Backup that the slot at of an
// instance's full or incremental schedule makes: <instance>-full-
// or <instance>-incr- and the slot in UTC to the second, in the lower
// case a DNS-1123 subdomain (what both sources require of a Backup name)
// allows, e.g. db-full-20261130t020000z. Two slots of one schedule never
// share a second, and the type keeps a full and an incremental slot at the
// same time apart. An instance name is a label value (63 characters at
// most), so the name stays far below the 253 a subdomain allows.
func ScheduledBackupName(instance string, typ outpostv1.BackupType, at time.Time) string {
	kind := "full"
	if typ == outpostv1.BackupIncremental {
		kind = "incr"
	}
	return instance + "-" + kind + "-" + at.UTC().Format("20060102t150405z")
}

// clockSlack is how far a recorded slot may lie after the clock's now
// before Schedule takes it for a clock that was set back.
const clockSlack = time.Minute

// clockWentBack reports whether last, a recorded schedule slot, lies after
// now: the slot was taken while the clock was ahead (an offline host that
// booted with a wrong date), and counting from it would run nothing until
// the clock catches up. It says so with a Warning event; the caller starts
// the schedule again from now.
func (r *BackupReconciler) clockWentBack(inst *outpostv1.PostgresInstance, last *metav1.Time, now time.Time, what string) bool {
	if last == nil || !last.Time.After(now.Add(clockSlack)) {
		return false
	}
	if r.Events != nil {
		r.Events.Event(inst, "Warning", "ScheduleClockWentBack", fmt.Sprintf("%s last ran its slot at %s, after the clock's now %s: the clock was set back, so the schedule starts again from now",
			what, last.Time.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
	}
	return true
}

// DueSlot returns the newest slot of sched after last and at or before
// now, and false when there is none. Slots follow from last as cron's Next
// gives them, so those of an @every schedule count from the last one taken.
// It does not walk every missed slot of a long outage one by one: it looks
// back from now in doubling steps to the first step that holds a slot.
func DueSlot(sched cron.Schedule, last, now time.Time) (time.Time, bool) {
	reached := func(t time.Time) bool { return !t.IsZero() && !t.After(now) }
	first := sched.Next(last)
	if !reached(first) {
		return time.Time{}, false
	}
	if every, ok := sched.(cron.ConstantDelaySchedule); ok && every.Delay > 0 {
		// Next(t) is t plus the delay, less t's fraction of a second.
		n := now.Sub(first) / every.Delay
		return first.Add(n * every.Delay), true
	}
	from := last
	for step := time.Second; ; step *= 2 {
		s := now.Add(-step)
		if !s.After(last) {
			break
		}
		if reached(sched.Next(s)) {
			from = s
			break
		}
	}
	at := sched.Next(from)
	for next := sched.Next(at); reached(next); next = sched.Next(at) {
		at = next
	}
	return at, true
}

func (r *BackupReconciler) finish(b *outpostv1.Backup, phase outpostv1.BackupPhase, reason, msg string) {
	now := metav1.NewTime(r.now())
	b.Status.Phase, b.Status.StoppedAt = phase, &now
	status := metav1.ConditionTrue
	if phase == outpostv1.BackupFailed {
		status = metav1.ConditionFalse
		b.Status.Error = msg
	}
	SetCondition(r.Events, b, &b.Status.Conditions, metav1.Condition{
		Type: outpostv1.ConditionReady, Status: status, Reason: reason, Message: msg,
	})
}

func (r *BackupReconciler) setCondition(b *outpostv1.Backup, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{
		Type: outpostv1.ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: b.Generation,
	})
}
