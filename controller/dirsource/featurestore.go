package dirsource

import "github.com/outpostdata/outpost/controller"

// OnFeatureStores sets the reconciler of FeatureStore manifests. Without
// one they are stored as validated, with no status.
func (c *Controller) OnFeatureStores(r *controller.FeatureStoreReconciler) { c.featureStores = r }
