// Package instancemanager is the in-pod instance manager, `outpost instance
// run`: the entrypoint of the pods the kubernetes runtime creates. It owns
// one PostgreSQL server's life inside its container with the postgres
// package: initdb on the first start, the configuration the controller put
// in the instance's ConfigMap, the application role, databases and
// extensions, supervision with restarts, and a clean shutdown on SIGTERM.
//
// It serves /livez and /readyz, which ask the server itself over a real
// connection, Prometheus metrics on /metrics, GET /archiver: the WAL
// archiver's status, read every reload interval, when archive settings
// changed with ALTER SYSTEM are also put back (archiving.go), and POST
// /backup, a base backup for the controller, behind a bearer token
// (backup.go). It does not talk to the Kubernetes API: everything it
// needs arrives through the mounted ConfigMap (re-read while it runs), the
// mounted TLS and object store Secrets, and the passwords in its
// environment. It connects as the superuser through the server's Unix
// socket (tls.go serves the mounted certificate).
package instancemanager
