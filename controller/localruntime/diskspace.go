package localruntime

import (
	"fmt"
	"syscall"

	"k8s.io/apimachinery/pkg/api/resource"
)

// checkFreeSpace refuses to create an instance whose storage size is larger
// than the free space where its data would go: on one host nothing else
// reserves the space, and a full disk stops every instance on it.
func checkFreeSpace(dir string, want int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("free space of %s: %w", dir, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < want {
		return fmt.Errorf("spec.storage.size: %s requested but only %s free in %s",
			resource.NewQuantity(want, resource.BinarySI), resource.NewQuantity(free, resource.BinarySI).String(), dir)
	}
	return nil
}
