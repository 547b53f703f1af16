package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// CreateOptions says what to back up and where to.
type CreateOptions struct {
	Store               *Store
	Namespace, Instance string
	// ConnString connects as a superuser to the running server.
	ConnString string
	// DataDir is the server's data directory, read directly from disk
	// between pg_backup_start and pg_backup_stop.
	DataDir string
	Keys    Keys
	// Concurrency is how many objects are compressed and uploaded at once;
	// 0 means twice the number of CPUs, at least 4.
	Concurrency int
	// ChunkSize is the raw size of one object; 0 means 32 MiB for a full
	// backup and 8 MiB for an incremental one.
	ChunkSize int
	// Progress, if set, is called with the bytes read so far.
	Progress func(read int64)
	// StopTimeout bounds the wait, after pg_backup_stop, for the WAL the
	// backup needs to be archived; 0 means 10 minutes. A backup that runs into it
	// fails instead of staying "running".
	StopTimeout time.Duration
	// OnStart, if set, is called with the backup ID once the backup has
	// started on the server, before data is copied.
	OnStart func(id string)
	// Type is TypeFull (the default) or TypeIncremental.
	Type string
	// Parent is the backup an incremental one goes on top of; empty means
	// the newest completed backup of the same cluster, full or
	// incremental.
	Parent string
}

// Create makes a full base backup of a running server without blocking
// writes: a non-exclusive pg_backup_start on one connection, the data
// directory streamed as a tar split into objects that are compressed,
// encrypted and uploaded concurrently, then pg_backup_stop and a wait for
// the WAL the backup needs to be archived. The manifest is written last; a
// backup interrupted before it never counts as completed. The backup holds
// the instance's lease from before pg_backup_start to the manifest, so it
// never runs alongside another backup, retention or delete (ErrBusy).
//
// An incremental backup (opts.Type) stores only what changed since its
// parent; see incremental.go. TypeIncrementalOrFull makes a full backup
// when nothing can be the parent (ErrNoParent), and says why.
func Create(ctx context.Context, opts CreateOptions) (*Manifest, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if opts.Concurrency <= 0 {
		opts.Concurrency = max(4, 2*runtime.GOMAXPROCS(0))
	}
	switch opts.Type {
	case "", TypeFull, TypeIncremental, TypeIncrementalOrFull:
	default:
		return nil, fmt.Errorf("backup %s/%s: type %q: want %s, %s or %s", opts.Namespace, opts.Instance, opts.Type, TypeFull, TypeIncremental, TypeIncrementalOrFull)
	}
	if opts.Parent != "" && opts.Type != TypeIncremental {
		return nil, fmt.Errorf("backup %s/%s: a parent (%s) is only for an incremental backup", opts.Namespace, opts.Instance, opts.Parent)
	}
	cfg, err := pgx.ParseConfig(opts.ConnString)
	if err != nil {
		return nil, fmt.Errorf("backup %s/%s: connection string: %w", opts.Namespace, opts.Instance, err)
	}
	// pg_stat_activity shows the session as the backup's.
	if _, set := cfg.RuntimeParams["application_name"]; !set {
		cfg.RuntimeParams["application_name"] = "outpost backup"
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("backup %s/%s: connect: %w", opts.Namespace, opts.Instance, err)
	}
	// Closing the session aborts a backup that did not stop: PostgreSQL
	// ends a non-exclusive backup with its session.
	defer conn.Close(context.WithoutCancel(ctx))

	m := &Manifest{Format: manifestFormat, Type: TypeFull, Namespace: opts.Namespace, Instance: opts.Instance, Encrypted: opts.Keys.Encrypted()}
	var versionNum, archiveMode string
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num'), (SELECT system_identifier::text FROM pg_control_system()), current_setting('data_checksums'), current_setting('archive_mode'), pg_is_in_recovery()").
		Scan(&versionNum, &m.SystemIdentifier, &m.DataChecksums, &archiveMode, &inRecovery); err != nil {
		return nil, fmt.Errorf("backup: read server identity: %w", err)
	}
	v, _ := strconv.Atoi(versionNum)
	m.PGVersion = v / 10000
	lease, ctx, err := AcquireLease(ctx, opts.Store, opts.Namespace, opts.Instance, "backup")
	if err != nil {
		return nil, fmt.Errorf("backup %s/%s: %w", opts.Namespace, opts.Instance, err)
	}
	defer lease.Release(ctx)
	inv := &inventory{}
	var parent *Manifest
	if opts.Type == TypeIncremental || opts.Type == TypeIncrementalOrFull {
		// Chosen under the lease, so that retention cannot delete the
		// parent meanwhile.
		parent, err = chooseParent(ctx, opts.Store, opts.Namespace, opts.Instance, m.SystemIdentifier, opts.Parent)
		if err == nil {
			err = checkParentTimeline(ctx, conn, parent)
		}
		switch {
		case err != nil && opts.Type == TypeIncrementalOrFull && errors.Is(err, ErrNoParent):
			parent, m.FullBecause = nil, err.Error()
		case err != nil:
			return nil, fmt.Errorf("incremental backup of %s/%s: %w", opts.Namespace, opts.Instance, err)
		}
	}
	if opts.ChunkSize <= 0 {
		// An incremental backup reads much and keeps little: smaller
		// objects are compressed while the scan goes on, where the last
		// of a few large ones would be compressed alone after it.
		opts.ChunkSize = 32 << 20
		if parent != nil {
			opts.ChunkSize = 8 << 20
		}
	}
	if parent != nil {
		m.Format, m.Type, m.Parent = incrementalFormat, TypeIncremental, parent.ID
		inv.parent, inv.since, inv.parentDatabases = parentFiles(parent), parseLSN(parent.StartLSN), parent.Databases
		if parent.DataChecksums != m.DataChecksums {
			// Checksums were turned on or off since the parent (or it does
			// not say): every page may differ at the same LSN.
			inv.parent = map[string]bool{}
		}
	}
	beforeBackupStart()
	if err := conn.QueryRow(ctx, "SELECT pg_backup_start($1, true)::text, clock_timestamp()", "outpost").Scan(&m.StartLSN, &m.StartTime); err != nil {
		return nil, fmt.Errorf("backup: pg_backup_start: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT timeline_id, pg_walfile_name($1::pg_lsn) FROM pg_control_checkpoint()", m.StartLSN).Scan(&m.Timeline, &m.StartWAL); err != nil {
		return nil, fmt.Errorf("backup: read timeline: %w", err)
	}
	m.ID = newBackupID(m.StartTime)
	if opts.OnStart != nil {
		opts.OnStart(m.ID)
	}
	// After the start, so that a database made again before this look is
	// seen as another, and one made again after it is in the WAL replayed
	// from the start.
	if m.Databases, err = databaseIdentities(ctx, conn, opts.DataDir); err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	inv.databases = m.Databases
	dir := m.dir()

	objects, source, err := uploadDataDir(ctx, opts, dir, inv)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	m.Objects, m.SourceBytes, m.Files, m.Dirs = objects, source, inv.files, inv.dirs
	for _, o := range objects {
		m.StoredBytes += o.Size
	}

	// The backup is complete only once the last WAL segment it needs is
	// archived, so that it can always be restored. pg_backup_stop waits
	// for that a second at a time; on a primary, waitArchived watches the
	// same status files more often instead (archivewait.go). A standby's
	// segment name is not at hand, so there PostgreSQL waits.
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Minute
	}
	stopCtx, stopCancel := context.WithTimeout(ctx, opts.StopTimeout)
	defer stopCancel()
	var lastSegment string
	if err := conn.QueryRow(stopCtx, "SELECT lsn::text, CASE WHEN $1 THEN '' ELSE pg_walfile_name(lsn) END, labelfile, coalesce(spcmapfile, ''), clock_timestamp() FROM pg_backup_stop($1)", inRecovery).
		Scan(&m.StopLSN, &lastSegment, &m.BackupLabel, &m.TablespaceMap, &m.StopTime); err != nil {
		if stopCtx.Err() != nil && ctx.Err() == nil {
			return nil, notArchived(m.ID, "", opts.StopTimeout)
		}
		return nil, fmt.Errorf("backup %s: pg_backup_stop: %w", m.ID, err)
	}
	if !inRecovery && archiveMode != "off" {
		if err := waitArchived(stopCtx, opts.DataDir, lastSegment); err != nil {
			switch {
			case ctx.Err() != nil:
				return nil, fmt.Errorf("backup %s: wait for WAL segment %s to be archived: %w", m.ID, lastSegment, context.Cause(ctx))
			case stopCtx.Err() != nil:
				return nil, notArchived(m.ID, lastSegment, opts.StopTimeout)
			}
			return nil, fmt.Errorf("backup %s: %w", m.ID, err)
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	// A lease lost during the backup (it could not be renewed) means
	// another writer may have run: no manifest then.
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, err)
	}
	if err := opts.Store.put(ctx, path.Join(dir, manifestName), b); err != nil {
		return nil, fmt.Errorf("backup %s: write manifest: %w", m.ID, err)
	}
	return m, nil
}

// Contents of these directories are not backed up (PostgreSQL recreates
// them or they must start empty); the directories themselves are.
var skipContents = map[string]bool{
	"pg_wal": true, "pg_replslot": true, "pg_stat_tmp": true, "pg_dynshmem": true,
	"pg_notify": true, "pg_serial": true, "pg_snapshots": true, "pg_subtrans": true,
}

// Files never backed up: they describe the running server, not its data.
var skipFiles = map[string]bool{
	"postmaster.pid": true, "postmaster.opts": true, "backup_label": true, "backup_label.old": true,
	"tablespace_map": true, "tablespace_map.old": true, "recovery.signal": true, "standby.signal": true,
	"pg_internal.init": true,
}

// chunk is one object's worth of the tar stream.
type chunk struct {
	index int
	data  []byte
}

// uploadDataDir walks the data directory into one tar stream, cuts it into
// chunks and has workers seal and upload them.
func uploadDataDir(ctx context.Context, opts CreateOptions, dir string, inv *inventory) (_ []Object, _ int64, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Chunk buffers circulate between the reader and the workers: at most
	// one being filled, one queued and one per worker. A bounded free list
	// rather than a sync.Pool, which the garbage collector empties, making
	// the next chunk buffer a fresh allocation the runtime must zero.
	free := &bufferList{free: make(chan []byte, opts.Concurrency+2), size: opts.ChunkSize}
	chunks := make(chan chunk, 1)
	var (
		mu      sync.Mutex
		objects []Object
		wg      sync.WaitGroup
	)
	for range opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sealed bytes.Buffer
			for c := range chunks {
				if ctx.Err() != nil {
					continue
				}
				sealed.Reset()
				if err := opts.Keys.seal(&sealed, c.data); err != nil {
					cancel(err)
					continue
				}
				name := fmt.Sprintf("data.%06d.tar%s", c.index, opts.Keys.objectSuffix())
				obj := Object{Name: name, Size: int64(sealed.Len()), SHA256: sha256Hex(sealed.Bytes()), RawSize: int64(len(c.data))}
				free.put(c.data)
				if err := opts.Store.put(ctx, path.Join(dir, name), sealed.Bytes()); err != nil {
					cancel(err)
					continue
				}
				mu.Lock()
				for len(objects) <= c.index {
					objects = append(objects, Object{})
				}
				objects[c.index] = obj
				mu.Unlock()
			}
		}()
	}
	cw := &chunkWriter{size: opts.ChunkSize, out: chunks, free: free, ctx: ctx}
	if cw.buf, err = free.get(ctx); err != nil {
		return nil, 0, err
	}
	var read atomic.Int64
	werr := writeTar(ctx, opts.DataDir, cw, inv, func(n int64) {
		if opts.Progress != nil {
			opts.Progress(read.Add(n))
		} else {
			read.Add(n)
		}
	})
	if werr == nil {
		werr = cw.flush()
	}
	close(chunks)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil {
		return nil, 0, cause
	}
	if werr != nil {
		return nil, 0, werr
	}
	return objects, read.Load(), nil
}

// bufferList hands out chunk buffers, allocating up to cap(free) of them
// and then waiting for one to come back. Only the reader calls get.
type bufferList struct {
	free      chan []byte
	size      int
	allocated int
}

func (l *bufferList) get(ctx context.Context) ([]byte, error) {
	select {
	case b := <-l.free:
		return b, nil
	default:
	}
	if l.allocated < cap(l.free) {
		l.allocated++
		return make([]byte, 0, l.size), nil
	}
	select {
	case b := <-l.free:
		return b, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (l *bufferList) put(b []byte) { l.free <- b[:0] }

// chunkWriter cuts a stream into chunks of size bytes.
type chunkWriter struct {
	size  int
	buf   []byte
	index int
	out   chan<- chunk
	free  *bufferList
	ctx   context.Context
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := w.size - len(w.buf)
		take := min(room, len(p))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		if len(w.buf) == w.size {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// readFrom copies n bytes of r straight into chunks, without the detour
// through a copy buffer, and pads with zeros if r ends early (a file that
// shrank while it was read). It returns how many bytes came from r.
func (w *chunkWriter) readFrom(r io.Reader, n int64) (int64, error) {
	var got int64
	for got < n {
		room := min(int64(w.size-len(w.buf)), n-got)
		k, err := io.ReadFull(r, w.buf[len(w.buf):len(w.buf)+int(room)])
		w.buf = w.buf[:len(w.buf)+k]
		got += int64(k)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return got, w.zeros(n - got)
		}
		if err != nil {
			return got, err
		}
		if len(w.buf) == w.size {
			if err := w.flush(); err != nil {
				return got, err
			}
		}
	}
	return got, nil
}

// zeros writes n zero bytes.
func (w *chunkWriter) zeros(n int64) error {
	_, err := io.CopyN(w, zeroReader{}, n)
	return err
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	select {
	case w.out <- chunk{index: w.index, data: w.buf}:
	case <-w.ctx.Done():
		return context.Cause(w.ctx)
	}
	w.index++
	var err error
	w.buf, err = w.free.get(w.ctx)
	return err
}

// writeTar writes the data directory as a tar stream, recording what it
// saw in inv. Files may change or vanish while they are read: WAL replay
// from the backup's start repairs torn pages, a vanished file is left out,
// and a shrunk one is padded. For an incremental backup, inv says which
// files are taken by changed page only.
//
// archive/tar writes only the headers (into hdr, then to w); file contents
// are read straight into w's chunks, which saves a copy of every byte. The
// framing is plain tar: each file padded to 512 bytes, two zero blocks at
// the end.
func writeTar(ctx context.Context, dataDir string, w *chunkWriter, inv *inventory, progress func(int64)) error {
	var hdr bytes.Buffer
	header := func(h *tar.Header) error {
		hdr.Reset()
		if err := tar.NewWriter(&hdr).WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		_, err := w.Write(hdr.Bytes())
		return err
	}
	err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		rel, _ := filepath.Rel(dataDir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		parent, base := path.Split(rel)
		parent = strings.TrimSuffix(parent, "/")
		if skipContents[parent] && !(parent == "pg_wal" && base == "archive_status" && d.IsDir()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(base, "pgsql_tmp") && d.IsDir() {
			// A spilling sort's file sets live in subdirectories; taking
			// their files without the directories made the backup
			// impossible to restore.
			return fs.SkipDir
		}
		if parent == "pg_wal/archive_status" || skipFiles[base] || strings.HasPrefix(base, "pgsql_tmp") {
			return nil
		}
		if parent == "pg_tblspc" {
			return fmt.Errorf("%s: tablespaces outside the data directory are not supported by this version's backups", p)
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		if d.IsDir() {
			inv.dirs = append(inv.dirs, rel)
			return header(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: int64(info.Mode().Perm()), ModTime: info.ModTime()})
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		defer f.Close()
		size := info.Size()
		inv.files = append(inv.files, FileEntry{Path: rel, Size: size})
		if inv.byPage(rel, size) {
			if err := inv.writePages(ctx, w, header, f, rel, info); err != nil {
				return err
			}
			progress(size)
			return nil
		}
		if err := header(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: int64(info.Mode().Perm()), Size: size, ModTime: info.ModTime()}); err != nil {
			return err
		}
		// Beyond size, what was appended after the header belongs to WAL
		// replay; short of it, readFrom pads with zeros.
		if _, err := w.readFrom(f, size); err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if pad := (blockSize - size%blockSize) % blockSize; pad > 0 {
			if err := w.zeros(pad); err != nil {
				return err
			}
		}
		progress(size)
		return nil
	})
	if err != nil {
		return err
	}
	// The end of the archive: two zero blocks.
	return w.zeros(2 * blockSize)
}

// blockSize is tar's unit of framing.
const blockSize = 512

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// since formats a duration for logs and messages.
func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }
