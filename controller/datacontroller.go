package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/usageexport"
)

// Reasons of the DataController's Ready condition, which says whether the
// site is metering.
const (
	ReasonMetering       = "Metering"
	ReasonSamplingFailed = "SamplingFailed"
	ReasonNoHubToken     = "NoHubToken"
	// ReasonOrphanSweepFailed: the declared instances could not be listed
	// (RBAC, say), so deleted instances cannot be closed.
	ReasonOrphanSweepFailed = "OrphanSweepFailed"
	// ReasonNotTheSite marks a DataController other than the site's one.
	ReasonNotTheSite = "NotTheSite"
	// ReasonNoSigningKey: without the key nothing can be signed or even
	// named (the site id comes from it).
	ReasonNoSigningKey = "NoSigningKey"
)

// SiteSource is what the DataController reconciler needs from where the
// site is declared (the Kubernetes API or the manifests directory).
type SiteSource interface {
	// HubAccess reads the hub token and CA a direct-mode DataController
	// names. An error means usage cannot be streamed; it waits in the
	// backlog, and Ready says why.
	HubAccess(ctx context.Context, dc *outpostv1.DataController) (usageexport.HubAccess, error)
	// DeclaredInstances lists the instances the site declares now, with
	// their deletion requests, for the orphan sweep.
	DeclaredInstances(ctx context.Context) ([]usageexport.Declared, error)
}

// DataControllerReconciler meters the site: each pass samples the usage
// ledger, streams the backlog to the hub in direct mode, and turns what it
// saw into the DataController's status: Ready (metering), the freshness
// condition of the site's mode, UsageStreaming, ClockSkew, the backlog,
// the last export and upload, and the signing key's fingerprint. Keep one
// for the life of the controller: its meter remembers the newest trusted
// time.
type DataControllerReconciler struct {
	meter  *usageexport.SiteMeter
	source SiteSource
}

// NewDataControllerReconciler meters with meter, whose orphan sweep lists
// what source declares.
func NewDataControllerReconciler(meter *usageexport.SiteMeter, source SiteSource) *DataControllerReconciler {
	meter.Source = source.DeclaredInstances
	return &DataControllerReconciler{meter: meter, source: source}
}

// Reconcile runs one metering pass for the site's DataController, updates
// dc.Status in place, and says when to pass again. An error (controldb
// cannot be read) leaves the status as it was.
func (r *DataControllerReconciler) Reconcile(ctx context.Context, dc *outpostv1.DataController) (time.Duration, error) {
	hub, hubErr := r.source.HubAccess(ctx, dc)
	site := UsageSite(dc)
	u, err := r.meter.Pass(ctx, site, hub)
	if err != nil {
		return 0, err
	}
	st := &outpostv1.DataControllerStatus{ObservedGeneration: dc.Generation, SigningKeyFingerprint: u.Fingerprint, Backlog: u.Backlog}
	if u.LastExport != nil {
		st.LastExportTime = &metav1.Time{Time: *u.LastExport}
	}
	if u.LastUpload != nil {
		st.LastUploadTime = &metav1.Time{Time: *u.LastUpload}
	}
	// The conditions start from dc's, so conditions other writers own are
	// kept.
	for _, c := range dc.Status.Conditions {
		st.Conditions = append(st.Conditions, *c.DeepCopy())
	}
	set := func(v usageexport.Verdict) {
		meta.SetStatusCondition(&st.Conditions, conditionOf(v, dc.Generation))
	}
	// A site that switched mode is judged by its new route only.
	other := usageexport.ConditionUsageUploaded
	if u.Freshness.Type == usageexport.ConditionUsageUploaded {
		other = usageexport.ConditionUsageExported
	}
	meta.RemoveStatusCondition(&st.Conditions, other)
	set(u.Freshness)
	set(readyOf(u, site, hub, hubErr))
	set(u.Clock.Verdict)
	if u.Streaming == nil {
		meta.RemoveStatusCondition(&st.Conditions, usageexport.ConditionUsageStreaming)
	} else {
		set(*u.Streaming)
	}
	if u.StreamErr != nil {
		// The freshness verdict stands; the reason it is not getting
		// fresher is worth a line.
		for i := range st.Conditions {
			if st.Conditions[i].Type == usageexport.ConditionUsageUploaded {
				st.Conditions[i].Message += "; the last attempt failed: " + u.StreamErr.Error()
			}
		}
	}
	dc.Status = *st
	return MeteringInterval(dc), nil
}

// readyOf is the Ready verdict of a pass: metering, unless the clock, the
// sampling, the orphan sweep or the hub access says why not, in that order.
func readyOf(u *usageexport.SiteUsage, site *usageexport.Site, hub usageexport.HubAccess, hubErr error) usageexport.Verdict {
	ready := usageexport.Verdict{Type: outpostv1.ConditionReady, True: true, Reason: ReasonMetering,
		Message: fmt.Sprintf("usage sampled up to %s", u.SampledUpTo.Format(time.RFC3339))}
	switch {
	case hubErr != nil:
		ready.True, ready.Reason, ready.Message = false, ReasonNoHubToken, hubErr.Error()
	case u.Clock.Skewed:
		ready.True, ready.Reason, ready.Message = false, usageexport.ConditionClockSkew, u.Clock.Message
	case u.SampleErr != nil:
		ready.True, ready.Reason, ready.Message = false, ReasonSamplingFailed, u.SampleErr.Error()
	case u.SweepErr != nil:
		ready.True, ready.Reason = false, ReasonOrphanSweepFailed
		ready.Message = u.SweepErr.Error() + "; instances deleted without the controller seeing it stay billed until it runs"
	case site.Streams() && hub.Token == "":
		ready.True, ready.Reason = false, ReasonNoHubToken
		ready.Message = "direct mode has no hub token (connectivity.hub.credentialsSecret, key \"token\"): usage waits in the backlog"
	}
	return ready
}

// MeterWithoutSite runs a metering pass while there is no DataController,
// so that the ledger's records are written as time passes even before the
// site is described.
func (r *DataControllerReconciler) MeterWithoutSite(ctx context.Context) error {
	_, err := r.meter.Pass(ctx, nil, usageexport.HubAccess{})
	return err
}

// NotTheSite marks dc as a DataController other than the site's one: a
// cluster is one site, which site describes. dc gets no fingerprint: it
// does not meter.
func NotTheSite(dc, site *outpostv1.DataController) {
	dc.Status.SigningKeyFingerprint = ""
	setDataControllerReady(dc, ReasonNotTheSite, fmt.Sprintf(
		"a cluster is one site, and DataController %s/%s describes it; this one is ignored", site.Namespace, site.Name))
}

// NoSigningKey marks dc as unable to meter because the signing key cannot
// be loaded or created.
func NoSigningKey(dc *outpostv1.DataController, err error) {
	setDataControllerReady(dc, ReasonNoSigningKey, err.Error())
}

func setDataControllerReady(dc *outpostv1.DataController, reason, msg string) {
	meta.SetStatusCondition(&dc.Status.Conditions, metav1.Condition{Type: outpostv1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: reason, Message: msg, ObservedGeneration: dc.Generation})
}

// UsageSite is what metering needs to know of the site dc describes; nil
// when there is no DataController.
func UsageSite(dc *outpostv1.DataController) *usageexport.Site {
	if dc == nil {
		return nil
	}
	s := &usageexport.Site{Name: dc.Spec.Site.Name, Labels: dc.Spec.Site.Labels,
		DirectMode: dc.Spec.Connectivity.Mode == outpostv1.ConnectivityDirect,
		WarnAfter:  dc.Spec.Metering.WarnAfter.Duration, OverdueAfter: dc.Spec.Metering.OverdueAfter.Duration}
	if s.DirectMode && dc.Spec.Connectivity.Hub != nil {
		s.HubURL = dc.Spec.Connectivity.Hub.URL
	}
	return s
}

// CheckHubTransport refuses a direct-mode hub reached over plain http://
// unless hub.allowInsecureHub says so. Admission refuses the same (a CEL
// rule); this re-check keeps a spec that slipped past it from sending the
// site's token in clear.
func CheckHubTransport(hub *outpostv1.Hub) error {
	if hub != nil && strings.HasPrefix(strings.ToLower(hub.URL), "http://") && !hub.AllowInsecureHub {
		return fmt.Errorf("connectivity.hub.url %s: an http:// hub receives the site's token and usage in clear: use https://, or set connectivity.hub.allowInsecureHub: true; usage waits in the outbox", hub.URL)
	}
	return nil
}

// MeteringInterval is how long to wait between metering passes for dc
// (nil: no DataController yet).
func MeteringInterval(dc *outpostv1.DataController) time.Duration {
	if dc != nil && dc.Spec.Metering.Interval.Duration > 0 {
		return dc.Spec.Metering.Interval.Duration
	}
	return usageexport.DefaultInterval
}
