package backup

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"
)

// RestoreOptions says which backup to put where.
type RestoreOptions struct {
	Store               *Store
	Namespace, Instance string
	// BackupID restores this backup; empty picks the newest completed one
	// that ended before TargetTime (or the newest, without one).
	BackupID string
	// TargetTime, when not zero, is where recovery will stop; it must not be
	// before the chosen backup's end.
	TargetTime time.Time
	// DataDir must not exist or be empty.
	DataDir string
	Keys    Keys
	// Concurrency of downloads; 0 means twice the number of CPUs, at least 4.
	Concurrency int
	// Progress, if set, is called with the bytes written so far.
	Progress func(written int64)
	// OnReplay, if set, is called by RestoreInto once the base backup is in
	// place and recovery starts replaying archived WAL, so a caller can
	// report that phase.
	OnReplay func()
	// Timings, if set, gathers where the restore's time went.
	Timings *RestoreTimings
}

// ChooseBackup picks the backup a restore starts from and checks the target
// time against it. Only one cluster's backups are candidates: that of the
// backup id names, or else that of the newest completed backup, so an
// instance re-created under a deleted one's name restores its own backups,
// never the old cluster's. A target before the first recoverability point
// is refused with the earliest possible time.
func ChooseBackup(ctx context.Context, s *Store, namespace, instance, id string, target time.Time) (*Manifest, error) {
	all, err := List(ctx, s, namespace, instance)
	if err != nil {
		return nil, err
	}
	var completed []*Manifest
	for _, b := range all {
		if b.Completed {
			completed = append(completed, b.Manifest)
		}
	}
	if len(completed) == 0 {
		return nil, fmt.Errorf("no completed backup of %s/%s in %s", namespace, instance, s)
	}
	if id != "" {
		for _, m := range completed {
			if m.ID == id {
				if !target.IsZero() && target.Before(m.StopTime) {
					return nil, fmt.Errorf("target time %s is before the end of backup %s; the earliest time it can restore to is %s", target.UTC().Format(time.RFC3339Nano), id, m.StopTime.UTC().Format(time.RFC3339Nano))
				}
				return m, nil
			}
		}
		return nil, fmt.Errorf("backup %s of %s/%s is not a completed backup in %s (outpost backup list shows them)", id, namespace, instance, s)
	}
	completed = ofCluster(completed, completed[len(completed)-1].SystemIdentifier)
	if target.IsZero() {
		return completed[len(completed)-1], nil
	}
	earliest := completed[0].StopTime
	if target.Before(earliest) {
		return nil, fmt.Errorf("target time %s is before the first recoverability point of %s/%s; the earliest time a restore can target is %s", target.UTC().Format(time.RFC3339Nano), namespace, instance, earliest.UTC().Format(time.RFC3339Nano))
	}
	var pick *Manifest
	for _, m := range completed {
		if !m.StopTime.After(target) {
			pick = m
		}
	}
	return pick, nil
}

// ofCluster keeps the manifests of cluster sysid.
func ofCluster(ms []*Manifest, sysid string) []*Manifest {
	var out []*Manifest
	for _, m := range ms {
		if m.SystemIdentifier == sysid {
			out = append(out, m)
		}
	}
	return out
}

// FirstRecoverabilityPoint is the earliest time a restore can target: the
// end of the oldest completed backup of the newest cluster. Zero when there
// is none.
func FirstRecoverabilityPoint(ctx context.Context, s *Store, namespace, instance string) (time.Time, error) {
	all, err := List(ctx, s, namespace, instance)
	if err != nil {
		return time.Time{}, err
	}
	var completed []*Manifest
	for _, b := range all {
		if b.Completed {
			completed = append(completed, b.Manifest)
		}
	}
	if len(completed) == 0 {
		return time.Time{}, nil
	}
	return ofCluster(completed, completed[len(completed)-1].SystemIdentifier)[0].StopTime, nil
}

// Restore downloads a base backup into DataDir, checking every object's
// checksum, writes its backup_label, and returns once all of it is on disk.
// An incremental backup is rebuilt from its chain: its full backup, then
// every incremental backup up to it in order, and the backup_label of the
// last, so that WAL replay starts at its start. A chain with a missing or
// damaged link is refused before anything is written. It does not start
// recovery: the caller adds recovery.signal and restore_command (see
// RecoverySettings).
func Restore(ctx context.Context, opts RestoreOptions) (*Manifest, error) {
	m, err := ChooseBackup(ctx, opts.Store, opts.Namespace, opts.Instance, opts.BackupID, opts.TargetTime)
	if err != nil {
		return nil, err
	}
	chain, err := Chain(ctx, opts.Store, opts.Namespace, opts.Instance, m.ID)
	if err != nil {
		return nil, err
	}
	for _, b := range chain {
		if b.Encrypted && len(opts.Keys.Identities) == 0 {
			return nil, fmt.Errorf("backup %s is encrypted with age and no key was given: configure spec.backup.encryption on the source, or pass --age-key", b.ID)
		}
		if !b.Encrypted && opts.Keys.configured() {
			return nil, fmt.Errorf("backup %s is not encrypted, but an age key is configured: refusing it, since anyone with write access to the bucket could have made it (restore without spec.backup.encryption if it is yours)", b.ID)
		}
	}
	if entries, err := os.ReadDir(opts.DataDir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("restore into %s: the directory is not empty", opts.DataDir)
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, err
	}
	disk, err := openFileSystem(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("restore into %s: %w", opts.DataDir, err)
	}
	defer disk.Close()
	err = readChain(ctx, opts, chain, func(i int, s *chunkStream) error {
		if i == 0 {
			if err := extractTar(s, opts.DataDir, opts.Progress, opts.Timings); err != nil {
				return fmt.Errorf("restore backup %s: %w", chain[0].ID, err)
			}
			return nil
		}
		if err := applyIncremental(s, chain[i], opts.DataDir); err != nil {
			return fmt.Errorf("restore backup %s: apply incremental backup %s: %w", m.ID, chain[i].ID, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(opts.DataDir, "backup_label"), []byte(m.BackupLabel), 0o600); err != nil {
		return nil, err
	}
	if m.TablespaceMap != "" {
		if err := os.WriteFile(filepath.Join(opts.DataDir, "tablespace_map"), []byte(m.TablespaceMap), 0o600); err != nil {
			return nil, err
		}
	}
	synced := time.Now()
	if err := disk.sync(); err != nil {
		return nil, fmt.Errorf("restore backup %s: make %s durable: %w", m.ID, opts.DataDir, err)
	}
	opts.Timings.add(StageSync, synced)
	return m, nil
}

// readChain fetches the objects of every backup in chain, in order, with
// some running ahead, and has consume read each backup's as one stream, the
// full backup's first. The fetch runs on from one backup into the next, so
// that the next link's first objects are fetched while the last ones of the
// link before are written, rather than every link starting with nothing
// fetched. If consume fails, or an object after a link's tar trailer cannot
// be fetched or is damaged, the fetch is cancelled and what was fetched is
// let go.
func readChain(ctx context.Context, opts RestoreOptions, chain []*Manifest, consume func(link int, s *chunkStream) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	links := make([]chan *decoded, len(chain))
	for i := range links {
		links[i] = make(chan *decoded, 1)
	}
	// errs[i] says why links[i] was closed early; it is set before the
	// close, and read only after it.
	errs := make([]error, len(chain))
	go fetchObjects(ctx, opts, chain, links, errs)
	for i := range chain {
		stream := &chunkStream{ctx: ctx, chunks: links[i], fetchErr: func() error { return errs[i] }, timings: opts.Timings}
		err := consume(i, stream)
		stream.close()
		if err == nil {
			// The stream ends with its tar trailer; what may follow it is
			// still fetched and checked, then let go, so that the fetch
			// goes on to the next link.
			for d := range links[i] {
				d.unref()
			}
			if errs[i] != nil {
				err = fmt.Errorf("backup %s, past the end of its tar stream: %w", chain[i].ID, errs[i])
			}
		}
		if err != nil {
			cancel(err)
			for _, rest := range links[i:] {
				for d := range rest {
					d.unref()
				}
			}
			return err
		}
	}
	return nil
}

// fetchObjects downloads, checks and opens the objects of chain's backups
// with some running ahead, and sends each backup's to its channel in links,
// in order, closing each once its last object is sent. A failure is put in
// errs, at the link it stops, and every channel from that one on is closed.
// Decoded buffers come back through a free list once their bytes are
// written, so that a restore does not allocate (and the runtime zero) a new
// buffer per object.
func fetchObjects(ctx context.Context, opts RestoreOptions, chain []*Manifest, links []chan *decoded, errs []error) {
	conc := opts.Concurrency
	if conc <= 0 {
		conc = max(4, 2*runtime.GOMAXPROCS(0))
	}
	type job struct {
		link int
		dir  string
		o    Object
	}
	var jobs []job
	for i, m := range chain {
		for _, o := range m.Objects {
			jobs = append(jobs, job{i, m.dir(), o})
		}
	}
	// link is the first channel not yet closed.
	link := 0
	defer func() {
		for ; link < len(links); link++ {
			close(links[link])
		}
	}()
	type result struct {
		data []byte
		err  error
	}
	free, freeStored := make(chan []byte, conc+2), make(chan []byte, conc)
	release := func(b []byte) {
		select {
		case free <- b[:0]:
		default:
		}
	}
	slots := make([]chan result, len(jobs))
	for i := range slots {
		slots[i] = make(chan result, 1)
	}
	sem := make(chan struct{}, conc)
	go func() {
		for i, j := range jobs {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() {
				var dst, stored []byte
				select {
				case dst = <-free:
				default:
				}
				select {
				case stored = <-freeStored:
				default:
				}
				data, stored, err := fetchObject(ctx, opts.Store, opts.Keys, j.dir, j.o, dst, stored, opts.Timings)
				if hook := objectFetched.Load(); hook != nil {
					(*hook)(j.link)
				}
				select {
				case freeStored <- stored:
				default:
				}
				slots[i] <- result{data, err}
			}()
		}
	}()
	for i, j := range jobs {
		for ; link < j.link; link++ {
			close(links[link])
		}
		var r result
		select {
		case r = <-slots[i]:
		case <-ctx.Done():
			errs[link] = context.Cause(ctx)
			return
		}
		<-sem
		if r.err != nil {
			errs[link] = r.err
			return
		}
		d := &decoded{data: r.data, release: release}
		d.refs.Store(1)
		select {
		case links[link] <- d:
		case <-ctx.Done():
			d.unref()
			errs[link] = context.Cause(ctx)
			return
		}
	}
}

// objectFetched is called with its link's place in the chain as each
// object has been fetched; a test watches the fetch run ahead through it.
var objectFetched atomic.Pointer[func(link int)]

// fetchObject downloads one object into stored's room, checks it and opens
// it, decoding into dst's; either may be nil. It returns the decoded bytes,
// and the download buffer for the next object.
func fetchObject(ctx context.Context, s *Store, keys Keys, dir string, o Object, dst, stored []byte, timings *RestoreTimings) ([]byte, []byte, error) {
	start := time.Now()
	stored, err := s.getSized(ctx, path.Join(dir, o.Name), o.Size, stored)
	if err != nil {
		return nil, nil, err
	}
	timings.add(StageGet, start)
	start = time.Now()
	if got := sha256Hex(stored); got != o.SHA256 || int64(len(stored)) != o.Size {
		return nil, nil, fmt.Errorf("%s: checksum mismatch (stored object has sha256 %s, %d bytes; manifest says %s, %d bytes): the object was altered or damaged", path.Join(dir, o.Name), got, len(stored), o.SHA256, o.Size)
	}
	timings.add(StageCheck, start)
	if cap(dst) < int(o.RawSize) {
		dst = make([]byte, 0, o.RawSize)
	}
	start = time.Now()
	defer timings.add(StageOpen, start)
	data, err := keys.openInto(path.Join(dir, o.Name), stored, dst)
	return data, stored, err
}
