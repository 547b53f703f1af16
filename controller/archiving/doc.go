// Package archiving watches WAL archiving of one running PostgreSQL server:
// it reads pg_stat_archiver and the segments still waiting in
// pg_wal/archive_status (status.go), compares the effective
// archive_command, archive_library and restore_command with the values
// Outpost manages and puts the managed ones back when someone changed them
// with ALTER SYSTEM (drift.go), and holds the settings a server archives
// with while no backup is configured (idle.go).
//
// It reads everything over SQL, so the single-host runtime (which reaches
// the server from the controller) and the in-pod instance manager (which
// runs next to it) use it alike. It does not judge what it reads: the
// reconcile core turns a Status into the WALArchiving condition, events and
// metrics.
package archiving
