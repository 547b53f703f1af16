package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// StorageClassName is the cluster's only StorageClass, and its default:
// local volumes, bound when a pod is scheduled (WaitForFirstConsumer), as
// there is no provisioner.
const StorageClassName = "local"

// persistentVolumes is how many local volumes Start creates ahead. They
// are Retain volumes, so each claim uses one up, even when deleted.
const persistentVolumes = 24

// pvCapacity is what each volume offers; nothing enforces it, so it is
// large enough for any claim in the tests.
var pvCapacity = resource.MustParse("100Gi")

func (cl *Cluster) createStorage(ctx context.Context) error {
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: StorageClassName,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
		Provisioner:       "kubernetes.io/no-provisioner",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimRetain),
	}
	if err := cl.Client.Create(ctx, sc); err != nil {
		return fmt.Errorf("StorageClass %s: %w", StorageClassName, err)
	}
	for i := range persistentVolumes {
		name := fmt.Sprintf("local-%02d", i)
		path := filepath.Join(cl.Dir, "volumes", name)
		if err := os.MkdirAll(path, 0o755); err != nil {
			return fmt.Errorf("PersistentVolume %s: %w", name, err)
		}
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvCapacity},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				StorageClassName:              StorageClassName,
				PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: path}},
				NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
						Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{NodeName},
					}}}},
				}},
			},
		}
		if err := cl.Client.Create(ctx, pv); err != nil {
			return fmt.Errorf("PersistentVolume %s: %w", name, err)
		}
	}
	return nil
}
