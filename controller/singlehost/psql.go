package singlehost

import (
	"fmt"
	"os/exec"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/localruntime"
)

// PsqlCommandLine is a shell command that opens psql on an instance as its
// application role, verifying the server with the site CA, with the
// password read from the instance's pgpass file rather than shown.
func PsqlCommandLine(sd StateDir, inst *outpostv1.PostgresInstance) string {
	dir, err := sd.Instance(inst.Namespace, inst.Name)
	if err != nil {
		return fmt.Sprintf("(no instance directory: %v)", err)
	}
	creds, err := localruntime.ReadCredentials(dir)
	if err != nil {
		return fmt.Sprintf("(credentials unreadable: %v)", err)
	}
	return fmt.Sprintf("PGPASSFILE=%s psql '%s'", localruntime.PgpassFile(dir), appURL(creds))
}

// appURL is the application role's URI without its password, which
// psql takes from the pgpass file.
func appURL(c localruntime.Credentials) string {
	c.Password = ""
	return c.URI()
}

// PsqlCommand returns the psql binary, its arguments and the extra
// environment that connect to an instance as its application role.
func PsqlCommand(sd StateDir, namespace, name string) (path string, args, env []string, err error) {
	dir, err := sd.Instance(namespace, name)
	if err != nil {
		return "", nil, nil, err
	}
	creds, err := localruntime.ReadCredentials(dir)
	if err != nil {
		return "", nil, nil, fmt.Errorf("instance %s/%s: %w", namespace, name, err)
	}
	path, err = exec.LookPath("psql")
	if err != nil {
		return "", nil, nil, fmt.Errorf("psql is not installed: run `make deps` or install postgresql-client-15")
	}
	args = []string{"psql", appURL(creds)}
	env = []string{"PGPASSFILE=" + localruntime.PgpassFile(dir)}
	return path, args, env, nil
}
