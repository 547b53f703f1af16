package controller

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/archiving"
)

// Runtime is everything the reconcile core needs of where instances run:
// it runs their servers, finds their databases for feature stores, and
// backs them up. Both runtimes implement all of it, kuberuntime (pods) and
// localruntime (local processes), so a source wires any runtime to the
// core without asking what it can do. Each source does that in one place:
//
//	source \ runtime   kuberuntime              localruntime
//	kubesource         kubesource.NewManager    kubesource.NewManager (--runtime local)
//	dirsource          -                        dirsource.Assemble (outpost up)
//
// kubesource.RunController picks the runtime for `outpost controller`.
// The kubesource+localruntime pairing (envtest driving real local
// servers) has no ObjectStore lookup wired, so its backups and WAL
// archiving say "no ObjectStore source" rather than run.
//
// Scheduled restore verification (RestoreVerifier) is not part of it: only
// the local runtime has somewhere to restore into a throw-away server, so
// the sources take a verifier as an optional field of their own, which
// stays nil with the kubernetes runtime. A method every runtime had to
// stub would hide that behind a runtime error.
type Runtime interface {
	InstanceRuntime
	DatabaseLocator
	BackupRunner
}

// InstanceRuntime runs PostgreSQL servers somewhere: as local processes, or as
// pods on Kubernetes. The reconcile core calls it and does not care which.
// Both methods are level-based: calling them again with the same spec does no
// harm.
type InstanceRuntime interface {
	// EnsureInstance makes the server match the spec as far as it can
	// without blocking for long, and reports what it sees.
	EnsureInstance(ctx context.Context, inst *outpostv1.PostgresInstance) (InstanceObservation, error)
	// DeleteInstance stops the server and keeps or removes its data as the
	// spec's deletionPolicy says.
	DeleteInstance(ctx context.Context, inst *outpostv1.PostgresInstance) error
}

// InstanceObservation is what a runtime sees of one server.
type InstanceObservation struct {
	// Ready is true when the server accepts connections and everything the
	// spec asks for (roles, databases, extensions, parameters) is in place.
	Ready bool
	// Reason and Message say why it is not ready yet, in the words of a
	// condition.
	Reason, Message string
	// Endpoint is host:port for clients.
	Endpoint string
	// CredentialsSecret names where the application credentials are.
	CredentialsSecret string
	// Restarts is how often the server was restarted after dying.
	Restarts int32
	// PgvectorVersion is the installed pgvector version, when known.
	PgvectorVersion string
	// Archiving is what the runtime read of the WAL archiver, with any
	// drift of the archive settings it found and restored; nil when it
	// could not look (the server is not up, or the runtime cannot reach
	// it), which leaves the WALArchiving condition as it was.
	Archiving *archiving.Status
}

// EventRecorder keeps events a user sees with `describe`. Kubernetes' own
// record.EventRecorder satisfies it.
type EventRecorder interface {
	Event(object runtime.Object, eventType, reason, message string)
}
