// Package postgres owns the life of one PostgreSQL server on this host: its
// binaries, initdb, the settings Outpost manages and the parameters users
// may set, start, stop, reload and restart by PID, adopting a server left
// running by an earlier Outpost process, supervision with restarts after
// crashes, health checks over a real connection, and the roles, databases
// and allowlisted extensions inside it. The single-host runtime, the in-pod
// instance manager and the test harness all run PostgreSQL through it.
//
// Files, one concern each: server.go (Server: initdb, start, stop, restart),
// process.go (the postmaster process and /proc), adopt.go, config.go
// (managed settings, parameter checks, memory sizing), parameters.go
// (reload, ApplyParameters), supervisor.go, sql.go and scram.go (roles,
// databases, extensions), appobjects.go (an application's role, databases
// and extensions together, for both runtimes), extensions.go (the allowlist), hba.go
// (pg_hba.conf), tls.go (the site CA, certificates and their renewal, the
// server's TLS files) and connurl.go (ConnURL, the one builder of every
// connection URI Outpost uses or prints).
//
// It does not know about custom resources or where a spec came from; callers
// translate a spec into the plain settings this package takes. It does not
// back up, archive WAL or restore: the backup package does, and hands its
// archive settings to Server.ManagedSettings.
package postgres
