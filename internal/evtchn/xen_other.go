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

// StatusCheck reports why this process cannot ask Xen for the status of its
// event channel ports: on this system there is no Xen.
func StatusCheck() error {
	return fmt.Errorf("evtchn: the port status query requires Linux running under Xen (this is %s)", runtime.GOOS)
}
