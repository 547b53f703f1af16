package singlehost

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// exampleManifest is what a new state directory starts with: one instance
// with pgvector and a database for feature stores, small enough for any
// host.
const exampleManifest = `# An example PostgreSQL instance with pgvector. Edit this file, or add
# more like it to this directory; the controller notices within seconds.
apiVersion: outpost.dev/v1alpha1
kind: PostgresInstance
metadata:
  name: example
spec:
  resources:
    cpu: "1"
    memory: 1Gi
  storage:
    size: 1Gi
  extensions: [vector]
  # A database for feature stores, besides the application database "app".
  databases: [features]
`

// writeExample creates the manifests directory, with the example instance
// in it, if the directory does not exist yet. An existing directory is the
// user's and is left alone, even if empty.
func writeExample(dir string) (bool, error) {
	if _, err := os.Stat(dir); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	return true, os.WriteFile(filepath.Join(dir, "example.yaml"), []byte(exampleManifest), 0o644)
}
