// Package simdaemon is the daemon behind cmd/vchan-simd: a simulated Xen
// host that separate processes share, each joining as a domain through
// package simclient. It plays hypervisor and xenstored: the grant tables
// are a gntsim.Table, the event channels an evtsim.Switch, the xenstore a
// xssim.Store served by xsserver. Package simproto documents the control
// protocol and the directory the daemon keeps its sockets in.
//
// It needs Linux; elsewhere Start fails and says so (daemon_other.go).
package simdaemon

import (
	"errors"

	"github.com/vchan-go/vchan/internal/gnt/gntsim"
)

// Declarations shared by the Linux implementation and the stub used
// elsewhere (daemon_other.go).

// ErrAlreadyRunning reports that another daemon holds the directory.
var ErrAlreadyRunning = errors.New("vchan-simd already running")

// DefaultGrantLimit is the number of pages one domain may have granted at
// once, the default of Linux's gntalloc `limit` parameter (docs/PROTOCOL.md
// §10), as in the in-process simulator.
const DefaultGrantLimit = gntsim.DefaultLimit

// Config configures a Daemon.
type Config struct {
	// Dir holds the daemon's sockets and state; empty means
	// simproto.DefaultDir().
	Dir string
	// GrantLimit is how many pages one domain may have granted at once,
	// like gntalloc's `limit` parameter; <= 0 means DefaultGrantLimit.
	GrantLimit int
	// Logf, if set, logs every request (vchan-simd -v).
	Logf func(format string, args ...any)
}

// Resources counts what a domain holds in the daemon: for leak checks.
type Resources struct {
	Granted int // pages it has granted
	Mapped  int // pages of others it has mapped
	Ports   int // event channel ports bound
}
