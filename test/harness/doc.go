// Package harness starts the real services Outpost's tests run against, each
// on a free loopback port in its own temporary directory: PostgreSQL with
// pgvector, a MinIO server with a bucket, and a kube-apiserver with etcd
// (through envtest) with Outpost's CRDs installed.
//
// Everything a test starts is stopped by PID when the test ends. A missing
// binary fails the test with the command that installs it; nothing is ever
// skipped.
package harness
