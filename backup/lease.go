package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
)

// One writer per instance: a backup, retention, or a delete by hand each
// holds the instance's lease, an object in the store itself, so that every
// writer takes the same lock wherever it runs (the CLI, the controller, a
// pod) and needs nothing but the store. It is created with a conditional
// write (If-None-Match: *), renewed with If-Match on its ETag, and taken
// over once it has expired, so a writer killed with -9 blocks the next one
// for at most leaseTTL; on the same host, where the holder's process can be
// looked up, at once.

const leaseName = "lease.json"

// Lease timings. A holder renews well before expiry so that one slow
// request does not lose the lease.
var (
	leaseTTL   = time.Minute
	leaseRenew = 15 * time.Second
)

// ErrBusy is an instance whose lease another backup, retention or delete
// holds.
var ErrBusy = errors.New("another backup, retention or delete of this instance is running")

// leaseRecord is the lease object's contents.
type leaseRecord struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Holder  string    `json:"holder"`
	Purpose string    `json:"purpose"`
	Taken   time.Time `json:"taken"`
	Expires time.Time `json:"expires"`
}

// Lease is a held instance lease.
type Lease struct {
	s      *Store
	key    string
	rec    leaseRecord
	mu     sync.Mutex
	etag   string
	stop   chan struct{}
	done   chan struct{}
	cancel context.CancelCauseFunc
}

// AcquireLease takes namespace/instance's lease for purpose ("backup",
// "retention", "delete"). The returned context is ctx, cancelled if the
// lease is lost (it could not be renewed before it expired); work done
// under the lease uses it. Release gives the lease back. A lease held by
// another is ErrBusy, naming the holder.
func AcquireLease(ctx context.Context, s *Store, namespace, instance, purpose string) (*Lease, context.Context, error) {
	host, _ := os.Hostname()
	l := &Lease{s: s, key: s.key(path.Join(instanceDir(namespace, instance), leaseName)), stop: make(chan struct{}), done: make(chan struct{})}
	now := time.Now()
	l.rec = leaseRecord{Host: host, PID: os.Getpid(), Holder: fmt.Sprintf("%s pid %d", host, os.Getpid()), Purpose: purpose, Taken: now, Expires: now.Add(leaseTTL)}
	etag, err := l.write(ctx, "")
	if isPreconditionFailed(err) {
		// Someone holds it, or held it and died: take over an expired one,
		// conditional on it being the very lease that was read.
		held, heldTag, rerr := l.read(ctx)
		if rerr != nil {
			return nil, nil, rerr
		}
		if time.Now().Before(held.Expires) && !held.deadHere(host) {
			return nil, nil, fmt.Errorf("%s/%s: %w (%s by %s since %s; it expires at %s unless renewed)", namespace, instance, ErrBusy,
				held.Purpose, held.Holder, held.Taken.UTC().Format(time.RFC3339), held.Expires.UTC().Format(time.RFC3339))
		}
		etag, err = l.write(ctx, heldTag)
		if isPreconditionFailed(err) {
			return nil, nil, fmt.Errorf("%s/%s: %w (another writer took over the expired lease first)", namespace, instance, ErrBusy)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("take the lease of %s/%s in %s: %w", namespace, instance, s, err)
	}
	l.etag = etag
	lctx, cancel := context.WithCancelCause(ctx)
	l.cancel = cancel
	go l.renew(lctx)
	return l, lctx, nil
}

// write puts the lease record, creating it (ifMatch empty) or replacing
// the object with ETag ifMatch; it returns the new ETag.
func (l *Lease) write(ctx context.Context, ifMatch string) (string, error) {
	b, err := json.Marshal(l.rec)
	if err != nil {
		return "", err
	}
	opts := minio.PutObjectOptions{ContentType: "application/json", DisableMultipart: true}
	if ifMatch == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(ifMatch)
	}
	info, err := l.s.client.PutObject(ctx, l.s.bucket, l.key, bytes.NewReader(b), int64(len(b)), opts)
	if err != nil {
		return "", err
	}
	return info.ETag, nil
}

// deadHere reports whether the holder ran on this host and its process is
// gone (killed, or crashed): its lease need not be waited out.
func (r leaseRecord) deadHere(host string) bool {
	if r.Host != host || r.PID <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(r.PID, 0), syscall.ESRCH)
}

func (l *Lease) read(ctx context.Context) (leaseRecord, string, error) {
	var rec leaseRecord
	obj, err := l.s.client.GetObject(ctx, l.s.bucket, l.key, minio.GetObjectOptions{})
	if err != nil {
		return rec, "", fmt.Errorf("read the lease %s in %s: %w", l.key, l.s, err)
	}
	defer obj.Close()
	info, err := obj.Stat()
	if err != nil {
		return rec, "", fmt.Errorf("read the lease %s in %s: %w", l.key, l.s, err)
	}
	if err := json.NewDecoder(obj).Decode(&rec); err != nil {
		// A damaged lease counts as expired: it cannot say who holds it.
		return leaseRecord{}, info.ETag, nil
	}
	return rec, info.ETag, nil
}

// renew extends the lease every leaseRenew until Release; if it cannot
// before the lease expires, it cancels the work done under it.
func (l *Lease) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		expires := l.rec.Expires
		l.rec.Expires = time.Now().Add(leaseTTL)
		rctx, cancel := context.WithDeadline(ctx, expires)
		etag, err := l.write(rctx, l.etag)
		cancel()
		if err == nil {
			l.etag = etag
		}
		l.mu.Unlock()
		switch {
		case err == nil:
		case isPreconditionFailed(err):
			l.cancel(fmt.Errorf("the lease %s was taken over by another writer: %w", l.key, ErrBusy))
			return
		case time.Now().After(expires):
			l.cancel(fmt.Errorf("the lease %s could not be renewed before it expired: %w", l.key, err))
			return
		}
	}
}

// Release stops renewing and deletes the lease if it is still this one's.
func (l *Lease) Release(ctx context.Context) {
	close(l.stop)
	<-l.done
	l.cancel(nil)
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, tag, err := l.read(ctx); err == nil && tag == l.etag {
		// Left behind on error, the lease expires by itself.
		_ = l.s.client.RemoveObject(ctx, l.s.bucket, l.key, minio.RemoveObjectOptions{})
	}
}
