// Package simclient joins the cross-process simulated Xen host that
// vchan-simd (package simdaemon) serves: Connect makes this process one
// domain of it, with that domain's grant, event channel and xenstore
// devices. The control protocol is package simproto's. vchan.SimHost is
// built on it.
//
// It needs Linux (the daemon passes memfds over SCM_RIGHTS); elsewhere
// Connect fails and says so (client_other.go).
package simclient

import "errors"

// Declarations shared by the Linux implementation and the stub used
// elsewhere (client_other.go).

// ErrNotRunning reports that no daemon serves the directory.
var ErrNotRunning = errors.New("vchan simulator not running")

// ErrConnectionLost reports that the daemon went away (it exited or was
// killed) while this process was connected.
var ErrConnectionLost = errors.New("vchan simulator connection lost")
