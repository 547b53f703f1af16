package archiving

// IdleCommand is archive_command while an instance has no spec.backup. It
// succeeds without storing anything.
//
// archive_mode is on from initdb, because turning it on later needs a
// restart of PostgreSQL, while changing archive_command needs only a
// reload: adding spec.backup then costs clients nothing. With archive_mode
// on and an empty archive_command PostgreSQL keeps every WAL segment until
// a command archives it, so the disk would fill; a command that succeeds
// lets it recycle segments as it would without archiving.
const IdleCommand = "/bin/true"

// IdleSettings are the archive settings of an instance without
// spec.backup: archiving on, into nowhere (see IdleCommand).
func IdleSettings() map[string]string {
	return map[string]string{
		"archive_mode":    "on",
		"archive_command": IdleCommand,
		"wal_level":       "replica",
	}
}
