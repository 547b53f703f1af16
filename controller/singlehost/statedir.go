package singlehost

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/outpostdata/outpost/controller/dirsource"
	"github.com/outpostdata/outpost/controller/localruntime"
	"github.com/outpostdata/outpost/controller/manifest"
)

// DefaultStateDir is where `outpost up` keeps everything unless told
// otherwise.
const DefaultStateDir = ".outpost"

// StateDir is the root of one single-host installation:
//
//	manifests/         desired state, YAML files a user drops or edits
//	controldb/         the controller's own PostgreSQL
//	instances/NS/NAME/ each instance's data, log and credentials
type StateDir struct {
	Root string
}

// OpenStateDir returns the state directory at path, made absolute.
func OpenStateDir(path string) (StateDir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return StateDir{}, fmt.Errorf("state directory %s: %w", path, err)
	}
	return StateDir{Root: abs}, nil
}

// Manifests is the manifests directory.
func (s StateDir) Manifests() string { return filepath.Join(s.Root, "manifests") }

// ControlDB is controldb's directory.
func (s StateDir) ControlDB() string { return filepath.Join(s.Root, "controldb") }

// Instance is one instance's directory; a name that would leave the
// instances directory is refused.
func (s StateDir) Instance(namespace, name string) (string, error) {
	return localruntime.InstanceDir(s.Root, namespace, name)
}

// readManifests validates the manifests directory as the controller does
// (without the controller's previously accepted objects), for commands that
// edit it.
func (s StateDir) readManifests(ctx context.Context) (*manifest.Validator, dirsource.Desired, error) {
	if err := s.mustExist(); err != nil {
		return nil, dirsource.Desired{}, err
	}
	v, err := manifest.NewValidator()
	if err != nil {
		return nil, dirsource.Desired{}, err
	}
	d, err := dirsource.Read(ctx, s.Manifests(), v, nil)
	return v, d, err
}

// mustExist fails with a hint when the state directory has not been set up.
func (s StateDir) mustExist() error {
	if _, err := os.Stat(s.Manifests()); err != nil {
		return fmt.Errorf("no manifests directory in %s: run `outpost up` there first, or pass --state-dir", s.Root)
	}
	return nil
}
