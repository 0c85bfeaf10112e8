//go:build !linux

package gnt

import (
	"fmt"
	"runtime"
)

// OpenSharer would open /dev/xen/gntalloc; the Xen grant devices exist only
// on Linux.
func OpenSharer() (Sharer, error) {
	return nil, fmt.Errorf("gnt: /dev/xen/gntalloc requires Linux running under Xen (this is %s)", runtime.GOOS)
}

// OpenMapper would open /dev/xen/gntdev; the Xen grant devices exist only on
// Linux.
func OpenMapper() (Mapper, error) {
	return nil, fmt.Errorf("gnt: /dev/xen/gntdev requires Linux running under Xen (this is %s)", runtime.GOOS)
}
