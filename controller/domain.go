package controller

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outpostdata/outpost/usageexport"
)

// Domain packages and API types: one rule.
//
// The domain packages (postgres, vectorstore, backup, usageexport) never
// import controller/api. They take plain inputs (vectorstore.Spec,
// usageexport.Site, ...) and return plain results (vectorstore.Stats,
// backup.Manifest, usageexport.SiteUsage, ...); this package translates a
// resource's spec into those inputs and the results into its status:
// conditions, phases, reasons and events. Where a domain package keeps a
// list the API also declares (an enum, an allowlist), a test compares the
// two, so that the vocabulary stays one (postgres.AllowedExtensions;
// vectorstore's types in domain_test.go).

// conditionOf is the condition that shows a domain verdict on an object of
// generation gen.
func conditionOf(v usageexport.Verdict, gen int64) metav1.Condition {
	status := metav1.ConditionFalse
	if v.True {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: v.Type, Status: status, Reason: v.Reason, Message: v.Message, ObservedGeneration: gen}
}
