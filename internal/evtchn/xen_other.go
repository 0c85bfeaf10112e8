//go:build !linux

package evtchn

import (
	"fmt"
	"runtime"
)

// Open would open /dev/xen/evtchn; the Xen event channel device exists only
// on Linux.
func Open() (Device, error) {
	return nil, fmt.Errorf("evtchn: /dev/xen/evtchn requires Linux running under Xen (this is %s)", runtime.GOOS)
}
