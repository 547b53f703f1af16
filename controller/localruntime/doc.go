// Package localruntime runs PostgresInstances as supervised postgres
// processes on this host: each under the state directory
// (instances/<namespace>/<name>), on its own port, with the application's
// credentials and the superuser's in 0600 files beside its data, and a
// server certificate from the site CA in the state directory (tls.go). It
// implements controller.Runtime with the postgres and backup packages, and
// controller.RestoreVerifier (verifyschedule.go) with throw-away restores
// under the state directory (verify.go). Each pass over a running server
// also reads its WAL archiver and puts drifted archive settings back
// (archiving.go).
//
// Servers run in their own process groups and survive a crash of the
// controller; the next controller adopts them instead of starting them again.
package localruntime
