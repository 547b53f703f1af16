// Package manifest reads Outpost manifests from YAML files and validates them
// exactly as the kube-apiserver validates a create or update of the same
// object, for the single-host "dir" source and `outpost apply -f`.
//
// It owns: splitting a YAML file into documents, decoding each into an
// unstructured object, and running the apiserver's custom-resource pipeline
// on it against the CRDs embedded from charts/outpost/crds: unknown-field
// detection by structural pruning (kubectl's default strict field
// validation), defaulting, ObjectMeta validation, OpenAPI schema validation,
// list-type invariants and CEL rules, with transition rules (self ==
// oldSelf) when the previously accepted object is given. The steps are the
// k8s.io/apiextensions-apiserver packages the apiserver itself calls, wired in
// the order of its request path, so "kubectl apply rejects it" and "the
// manifests directory rejects it" mean the same thing; there is no second copy
// of the rules in Go.
//
// It does not own: watching directories, deciding which file wins when two
// define the same object, storing objects, or system metadata (uid,
// resourceVersion, generation, timestamps); those belong to the source that
// calls it. Reconcile still re-checks what it relies on.
package manifest
