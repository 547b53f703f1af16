package kubesource

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/usageexport"
)

// ControllerNamespace is the namespace the controller runs in when not
// told: $POD_NAMESPACE, else the in-cluster service account's namespace,
// else "default" (a controller run from a workstation).
func ControllerNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}

// UsageAccess is what `outpost usage --source kubernetes` reads: the
// cluster (for the signing key Secret and the DataController) and
// controldb (for the ledger).
type UsageAccess struct {
	Config *rest.Config
	// Namespace is the controller's, where the signing key Secret is.
	Namespace string
	// ControlDBURL is the controller's --controldb-url.
	ControlDBURL string
	// ControlDBSecret, when ControlDBURL is empty, is the controller's
	// --controldb-secret: the URL is read from that Secret in Namespace.
	ControlDBSecret string
}

func (a UsageAccess) client() (client.Client, error) {
	s, err := Scheme()
	if err != nil {
		return nil, err
	}
	return client.New(a.Config, client.Options{Scheme: s})
}

// Key reads the site's signing key from its Secret; the controller creates
// it when it first leads.
func (a UsageAccess) Key(ctx context.Context) (usageexport.SigningKey, error) {
	c, err := a.client()
	if err != nil {
		return usageexport.SigningKey{}, err
	}
	k, err := LoadSigningKey(ctx, c, a.Namespace)
	if err != nil {
		return k, fmt.Errorf("%w (the controller creates it when it starts; --controller-namespace names its namespace)", err)
	}
	return k, nil
}

// Site returns the site's DataController, nil when there is none. With
// several, the oldest is the site, as the single host takes the first.
func (a UsageAccess) Site(ctx context.Context) (*outpostv1.DataController, error) {
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	var list outpostv1.DataControllerList
	if err := c.List(ctx, &list); err != nil {
		if apierrors.IsForbidden(err) {
			// A chart installed with watchNamespaces binds the controller's
			// role per namespace only.
			return nil, fmt.Errorf("list DataControllers in every namespace: %w (run as a user or ServiceAccount that may)", err)
		}
		return nil, fmt.Errorf("list DataControllers: %w", err)
	}
	return siteOf(list.Items), nil
}

// siteOf picks the site's DataController among dcs; nil when there is
// none. A cluster has one site; any other DataController is told so in its
// status. The one already metering (its status has the key's fingerprint)
// stays the site, so adding another never moves the site; otherwise the
// oldest, by name when created in the same second.
func siteOf(dcs []outpostv1.DataController) *outpostv1.DataController {
	if len(dcs) == 0 {
		return nil
	}
	sort.Slice(dcs, func(i, j int) bool {
		a, b := dcs[i], dcs[j]
		if ma, mb := a.Status.SigningKeyFingerprint != "", b.Status.SigningKeyFingerprint != ""; ma != mb {
			return ma
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	return &dcs[0]
}

func (a UsageAccess) db(ctx context.Context) (*controldb.DB, error) {
	if a.ControlDBURL == "" && a.ControlDBSecret != "" {
		var err error
		if a.ControlDBURL, err = ControlDBSecretURL(ctx, a.Config, a.Namespace, a.ControlDBSecret); err != nil {
			return nil, fmt.Errorf("--controldb-secret: %w", err)
		}
	}
	if a.ControlDBURL == "" {
		return nil, fmt.Errorf("--controldb-url or --controldb-secret: the controller's controldb is needed (in its pod they are $OUTPOST_CONTROLDB_URL or $OUTPOST_CONTROLDB_SECRET)")
	}
	db, err := controldb.Open(ctx, a.ControlDBURL)
	if err != nil {
		return nil, fmt.Errorf("--controldb-url: %w", err)
	}
	if err := usageexport.EnsureSchema(ctx, db.Pool); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Export exports one month of the cluster's usage, signed with the site's
// key; it also returns the site's name.
func (a UsageAccess) Export(ctx context.Context, month, version string, gzip bool) (*usageexport.ExportResult, string, error) {
	key, err := a.Key(ctx)
	if err != nil {
		return nil, "", err
	}
	dc, err := a.Site(ctx)
	if err != nil {
		return nil, "", err
	}
	db, err := a.db(ctx)
	if err != nil {
		return nil, "", err
	}
	defer db.Close()
	res, err := usageexport.ExportSite(ctx, db.Pool, key, controller.UsageSite(dc), month, version, gzip)
	return res, siteName(dc), err
}

// Show sums one month of the cluster's recorded usage per instance.
func (a UsageAccess) Show(ctx context.Context, month string) (*usageexport.MonthSummary, string, error) {
	if _, _, err := usageexport.ParseMonth(month); err != nil {
		return nil, "", fmt.Errorf("--month: %w", err)
	}
	dc, err := a.Site(ctx)
	if err != nil {
		return nil, "", err
	}
	db, err := a.db(ctx)
	if err != nil {
		return nil, "", err
	}
	defer db.Close()
	s, err := usageexport.SummarizeMonth(ctx, db.Pool, month)
	return s, siteName(dc), err
}

func siteName(dc *outpostv1.DataController) string {
	if dc == nil {
		return usageexport.DefaultSiteName
	}
	return dc.Spec.Site.Name
}

// RetryRefused puts the records the hub refused back in the backlog; the
// controller sends them on its next metering pass. It returns how many
// records that is.
func (a UsageAccess) RetryRefused(ctx context.Context) (int64, error) {
	db, err := a.db(ctx)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return usageexport.RetryRefused(ctx, db.Pool)
}
