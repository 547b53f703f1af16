package kubesource

import (
	"context"
	"net"
	"net/url"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/outpostdata/outpost/controller"
	"github.com/outpostdata/outpost/usageexport"
)

// setupUsage wires metering into a manager when opts.Usage is set: it
// returns the ledger the InstanceReconciler records PostgresInstances in
// (nil without metering) and registers the DataController reconciler.
func setupUsage(mgr manager.Manager, opts Options) (controller.UsageRecorder, error) {
	u := opts.Usage
	if u == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := usageexport.EnsureSchema(ctx, u.DB); err != nil {
		return nil, err
	}
	dc := &DataControllerReconciler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(),
		Events: mgr.GetEventRecorderFor("outpost-controller"), Log: opts.Log.With("component", "usage"),
		Keys: &SigningKeySource{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: u.Namespace},
		Pool: u.DB, Version: u.Version, Clock: u.Clock, TrustControlDBClock: u.TrustControlDBClock,
		Namespaces: opts.Namespaces,
	}
	if err := dc.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	return controller.UsageLedger{Ledger: usageexport.NewLedger(u.DB, u.Clock)}, nil
}

// onAnotherHost says whether controldb at dbURL runs on another host than
// this controller, so that its clock is an independent check on ours. An
// empty URL is the controller's own controldb; a URL that cannot be read
// is not trusted.
func onAnotherHost(dbURL string) bool {
	u, err := url.Parse(dbURL)
	if dbURL == "" || err != nil {
		return false
	}
	host := u.Hostname()
	if host == "" || host == "localhost" || strings.HasPrefix(host, "/") {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
