// Package dirsource takes desired state from a directory of YAML manifests,
// the single-host counterpart of the Kubernetes API: drop, edit or remove a
// file and the controller notices within a couple of seconds (fsnotify, with
// a periodic resync as a backstop).
//
// Each pass validates every manifest against the CRDs (package manifest),
// gives accepted objects the identity and generation an apiserver would
// (kept in controldb), reconciles them through the core, and stores their
// status in controldb. A bad manifest is reported with file and field and
// touches nothing else; an object whose file has become unreadable keeps its
// last accepted spec rather than being deleted. Controller.Accepted answers
// lookups from those same objects, so the rest of the host sees what the
// source holds in force without validating the directory again.
package dirsource
