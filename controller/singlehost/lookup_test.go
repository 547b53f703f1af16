package singlehost

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/dirsource"
	"github.com/outpostdata/outpost/controller/manifest"
	"github.com/outpostdata/outpost/test/harness"
)

// objectStoreYAML is an ObjectStore s3 whose bucket and prefix tell one
// version of it from another.
func objectStoreYAML(bucket, prefix string) string {
	return `apiVersion: outpost.dev/v1alpha1
kind: ObjectStore
metadata: {name: s3}
spec:
  endpoint: http://127.0.0.1:1
  bucket: ` + bucket + `
  prefix: "` + prefix + `"
  credentials: {file: /nonexistent/creds}
`
}

// runningSource is a manifest source running as `outpost up` runs it, on a
// fresh state directory, with controldb in a real PostgreSQL, and the
// lookup `outpost up` gives the local runtime.
type runningSource struct {
	sd     StateDir
	db     *controldb.DB
	src    *dirsource.Controller
	lookup lookup
	passes chan struct{}
	stop   func()
}

func startSource(t *testing.T) *runningSource {
	t.Helper()
	pg := harness.StartPostgres(t)
	db, err := controldb.Open(context.Background(), pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	v, err := manifest.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	sd := StateDir{Root: harness.TempDir(t)}
	if err := os.MkdirAll(sd.Manifests(), 0o755); err != nil {
		t.Fatal(err)
	}
	src := dirsource.New(sd.Manifests(), v, db, nil, harness.Logger(t))
	r := &runningSource{sd: sd, db: db, src: src, lookup: fromSource(src, sd.Manifests()), passes: make(chan struct{}, 1)}
	// The site callback runs in every pass once the pass has taken in what
	// it read, so it marks a pass whose objects lookups see.
	src.OnSite(func(*outpostv1.DataController) {
		select {
		case r.passes <- struct{}{}:
		default:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	r.stop = func() {
		if cancel != nil {
			cancel()
			cancel = nil
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(r.stop)
	return r
}

func (r *runningSource) write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(r.sd.Manifests(), name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// objectStore is what the running controller's lookup answers for s3.
func (r *runningSource) objectStore(t *testing.T) (*outpostv1.ObjectStore, error) {
	t.Helper()
	return r.lookup.objectStores()(context.Background(), "default", "s3")
}

// waitBucket waits until the lookup answers s3 with bucket.
func (r *runningSource) waitBucket(t *testing.T, bucket string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		o, err := r.objectStore(t)
		if err == nil && o.Spec.Bucket == bucket {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lookup did not answer bucket %s within 20 s: %+v, %v", bucket, o, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRejected waits until the source reports file as rejected with a
// message containing reason, then for a pass that read it so (any pass
// whose objects lookups see from then on has).
func (r *runningSource) waitRejected(t *testing.T, file, reason string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		errs, err := r.db.ManifestErrors(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range errs {
			if filepath.Base(e.File) == file && strings.Contains(e.Message, reason) {
				r.src.Kick()
				select {
				case <-r.passes:
				case <-time.After(20 * time.Second):
					t.Fatal("no pass within 20 s")
				}
				return e.Message
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not reported rejected (%q) within 20 s: %+v", file, reason, errs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLookupsKeepTheLastAcceptedObjectOfABrokenFile: while objectstore.yaml
// is half-saved (it does not parse) or fails a CEL rule, the directory
// source reports the file's error and keeps its last accepted ObjectStore
// in force, and the lookups of the running controller (the local
// runtime's, for backup.json and backups) and of commands beside it
// (controldb's) answer that ObjectStore with no error. The control is what
// the lookups used to do, validating the directory again: it has no
// ObjectStore s3 then.
func TestLookupsKeepTheLastAcceptedObjectOfABrokenFile(t *testing.T) {
	ctx := context.Background()
	r := startSource(t)
	good := objectStoreYAML("second", "site-a")
	r.write(t, "objectstore.yaml", objectStoreYAML("first", "site-a"))
	r.waitBucket(t, "first")
	r.write(t, "objectstore.yaml", good)
	r.waitBucket(t, "second")

	for _, broken := range []struct{ name, content, reason string }{
		{"half-saved", good[:len(good)/2] + "\n  : [\n", ""},
		{"failing CEL", objectStoreYAML("third", "/site-a"), "must not start with /"},
	} {
		t.Run(broken.name, func(t *testing.T) {
			r.write(t, "objectstore.yaml", broken.content)
			msg := r.waitRejected(t, "objectstore.yaml", broken.reason)

			o, err := r.objectStore(t)
			if err != nil {
				t.Fatalf("the running controller's lookup while the file is rejected (%s): %v", msg, err)
			}
			if o.Spec.Bucket != "second" || o.Spec.Prefix != "site-a" {
				t.Errorf("the running controller's lookup answered bucket %q prefix %q, want the last accepted second, site-a", o.Spec.Bucket, o.Spec.Prefix)
			}
			stored := &outpostv1.ObjectStore{}
			if err := fromControlDB(r.db, r.sd.Manifests())(ctx, "ObjectStore", "default", "s3", stored); err != nil {
				t.Fatalf("a command's lookup while the file is rejected: %v", err)
			} else if stored.Spec.Bucket != "second" {
				t.Errorf("a command's lookup answered bucket %q, want the last accepted second", stored.Spec.Bucket)
			}

			// The control: validating the directory again, as every lookup
			// did, finds the file's error and no ObjectStore s3.
			_, d, err := r.sd.readManifests(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := d.Objects[manifest.Key("ObjectStore", "default", "s3")]; ok || !d.Troubled[filepath.Join(r.sd.Manifests(), "objectstore.yaml")] {
				t.Errorf("a fresh validation of the directory found s3 (%v) or no error in its file (%v)", ok, d.Errors)
			}
			if err := fromDesired(d, r.sd.Manifests())(ctx, "ObjectStore", "default", "s3", &outpostv1.ObjectStore{}); err == nil {
				t.Error("the old lookup, from a fresh validation, found s3")
			}
		})
	}

	// Saved in full, the file is in force again.
	r.write(t, "objectstore.yaml", objectStoreYAML("fourth", "site-b"))
	r.waitBucket(t, "fourth")
	// Deleted, it is gone for lookups too.
	if err := os.Remove(filepath.Join(r.sd.Manifests(), "objectstore.yaml")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := r.objectStore(t)
		if err != nil && strings.Contains(err.Error(), "no ObjectStore default/s3") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lookup after objectstore.yaml was deleted: %v, want no ObjectStore", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLookupsDoNotValidateTheDirectory: a lookup of the running controller
// neither reads the manifests directory nor compiles the CRDs. With the
// directory gone, every re-read fails, yet lookups still answer; and a
// lookup allocates a few hundred objects, where building a validator (what
// each lookup used to do first) allocates far more, which the control
// measures.
func TestLookupsDoNotValidateTheDirectory(t *testing.T) {
	r := startSource(t)
	r.write(t, "objectstore.yaml", objectStoreYAML("first", "site-a"))
	r.waitBucket(t, "first")
	// No pass runs while lookups are measured.
	r.stop()

	lookups := testing.AllocsPerRun(20, func() {
		if _, err := r.objectStore(t); err != nil {
			t.Fatal(err)
		}
	})
	validations := testing.AllocsPerRun(2, func() {
		if _, _, err := r.sd.readManifests(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("allocations: %.0f per lookup, %.0f per validation of the directory", lookups, validations)
	if lookups > 2000 {
		t.Errorf("a lookup allocates %.0f objects: it compiles or validates something", lookups)
	}
	if validations < 20*lookups {
		t.Errorf("the control: a validation of the directory allocates %.0f objects, not clearly more than a lookup's %.0f", validations, lookups)
	}

	if err := os.Rename(r.sd.Manifests(), r.sd.Manifests()+".away"); err != nil {
		t.Fatal(err)
	}
	if o, err := r.objectStore(t); err != nil || o.Spec.Bucket != "first" {
		t.Errorf("lookup with the manifests directory gone: %+v, %v; want bucket first", o, err)
	}
	if _, _, err := r.sd.readManifests(context.Background()); err == nil {
		t.Error("the control: validating a directory that is gone did not fail")
	}
}
