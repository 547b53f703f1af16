// Package backup owns backups of PostgreSQL instances to S3-compatible object
// storage: base backups, WAL archiving (wal-push, wal-fetch), the catalog of
// what is stored, retention, schedules, restore and point-in-time recovery,
// and verification. Data is compressed with zstd and, when a key is set,
// encrypted with age on the client before it leaves the host.
package backup
