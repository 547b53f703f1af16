package singlehost

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/dirsource"
	"github.com/outpostdata/outpost/controller/localruntime"
	"github.com/outpostdata/outpost/controller/manifest"
)

// lookup decodes the object of kind namespace/name in force into out, or
// says it is not there. Every lookup on this host answers from accepted
// state (the manifest source's objects, or controldb's), never by
// validating the manifests directory again: that compiles every CRD's
// schema and CEL rules, and it disagrees with the source while a file is
// half-saved, since the source keeps the file's last accepted objects.
type lookup func(ctx context.Context, kind, namespace, name string, out runtime.Object) error

// fromSource looks objects up among those src holds accepted, for the
// running controller.
func fromSource(src *dirsource.Controller, dir string) lookup {
	return func(_ context.Context, kind, namespace, name string, out runtime.Object) error {
		o, ok := src.Accepted(kind, namespace, name)
		if !ok {
			return notDeclared(kind, namespace, name, dir)
		}
		return o.Into(out)
	}
}

// fromControlDB looks objects up among those the running controller has
// stored, for commands run beside it.
func fromControlDB(db *controldb.DB, dir string) lookup {
	return func(ctx context.Context, kind, namespace, name string, out runtime.Object) error {
		if namespace == "" {
			namespace = manifest.DefaultNamespace
		}
		rec, ok, err := db.Object(ctx, kind, namespace, name)
		if err != nil {
			return err
		}
		if !ok {
			return notDeclared(kind, namespace, name, dir)
		}
		if err := json.Unmarshal(rec.Object, out); err != nil {
			return fmt.Errorf("stored %s %s/%s: %w", kind, namespace, name, err)
		}
		return nil
	}
}

// fromDesired looks objects up in one reading of the manifests directory.
func fromDesired(d dirsource.Desired, dir string) lookup {
	return func(_ context.Context, kind, namespace, name string, out runtime.Object) error {
		o, ok := d.Objects[manifest.Key(kind, namespace, name)]
		if !ok {
			return notDeclared(kind, namespace, name, dir)
		}
		return o.Into(out)
	}
}

func notDeclared(kind, namespace, name, dir string) error {
	if namespace == "" {
		namespace = manifest.DefaultNamespace
	}
	return notDeclaredError{fmt.Sprintf("no %s %s/%s in %s: apply one first", kind, namespace, name, dir)}
}

// notDeclaredError is a lookup of an object nothing declares, which a
// caller may add a hint to.
type notDeclaredError struct{ msg string }

func (e notDeclaredError) Error() string { return e.msg }

// commandLookup is the lookup of a command run beside the controller:
// controldb's objects, what the controller accepted, while `outpost up`
// runs. Without it there is no accepted state, only the directory, which
// is then validated once for the whole command. close releases controldb.
func (s StateDir) commandLookup(ctx context.Context) (l lookup, close func(), err error) {
	if db, err := controldb.ConnectLocal(ctx, s.ControlDB()); err == nil {
		return fromControlDB(db, s.Manifests()), db.Close, nil
	}
	_, d, err := s.readManifests(ctx)
	if err != nil {
		return nil, nil, err
	}
	return fromDesired(d, s.Manifests()), func() {}, nil
}

// objectStores is the local runtime's ObjectStore lookup.
func (l lookup) objectStores() localruntime.ObjectStoreLookup {
	return func(ctx context.Context, namespace, name string) (*outpostv1.ObjectStore, error) {
		o := &outpostv1.ObjectStore{}
		if err := l(ctx, "ObjectStore", namespace, name, o); err != nil {
			return nil, err
		}
		return o, nil
	}
}

// instances is the Backup reconciler's PostgresInstance lookup.
func (l lookup) instances() controller.InstanceLookup {
	return func(ctx context.Context, namespace, name string) (*outpostv1.PostgresInstance, error) {
		inst := &outpostv1.PostgresInstance{}
		if err := l(ctx, "PostgresInstance", namespace, name, inst); err != nil {
			return nil, err
		}
		return inst, nil
	}
}
