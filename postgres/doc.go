// Package postgres owns the life of one PostgreSQL server on this host: its
// binaries, initdb, the settings Outpost manages, start and stop by PID, and
// health checks over a real connection. The single-host runtime, the in-pod
// instance manager and the test harness all run PostgreSQL through it.
//
// It does not know about custom resources or where a spec came from; callers
// translate a spec into the plain settings this package takes.
package postgres
