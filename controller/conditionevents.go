package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// The helpers in this file set a condition and announce it with an event in
// one call, as CloudNativePG's SetAsFailed does, so that what `describe`
// shows in the conditions and in the events never disagrees: the event
// carries the condition's own reason and message.

// ConditionedObject is a resource with conditions: conditions are observed
// at its generation, and events are recorded on it.
type ConditionedObject interface {
	runtime.Object
	GetGeneration() int64
}

// SetCondition sets c, observed at obj's generation, in conditions and,
// when that changed the condition (it is new, or its status, reason,
// message or observed generation differ), records an event with c's reason
// and message: Normal when c is True, Warning otherwise. It reports whether
// the condition changed.
func SetCondition(events EventRecorder, obj ConditionedObject, conditions *[]metav1.Condition, c metav1.Condition) bool {
	c.ObservedGeneration = obj.GetGeneration()
	if !meta.SetStatusCondition(conditions, c) {
		return false
	}
	eventType := corev1.EventTypeNormal
	if c.Status != metav1.ConditionTrue {
		eventType = corev1.EventTypeWarning
	}
	events.Event(obj, eventType, c.Reason, c.Message)
	return true
}

// RecordReadyTransition announces the Ready condition a reconcile pass left
// in after, compared with before: when its reason changed, or phaseChanged,
// it records an event with the condition's reason and message, a Warning
// when the object failed and Ready is not True. Reconcilers that set Ready
// more than once in a pass call it once at the end, so only where the pass
// ended is announced.
func RecordReadyTransition(events EventRecorder, obj runtime.Object, before, after []metav1.Condition, phaseChanged, failed bool) {
	now := meta.FindStatusCondition(after, outpostv1.ConditionReady)
	was := meta.FindStatusCondition(before, outpostv1.ConditionReady)
	if now == nil || (was != nil && was.Reason == now.Reason && !phaseChanged) {
		return
	}
	eventType := corev1.EventTypeNormal
	if failed && now.Status != metav1.ConditionTrue {
		eventType = corev1.EventTypeWarning
	}
	events.Event(obj, eventType, now.Reason, now.Message)
}
