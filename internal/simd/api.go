package simd

import "errors"

// Declarations shared by the Linux implementation and the stub used
// elsewhere (simd_other.go).

// ErrNotRunning reports that no daemon serves the directory.
var ErrNotRunning = errors.New("vchan simulator not running")

// ErrConnectionLost reports that the daemon went away (it exited or was
// killed) while this process was connected.
var ErrConnectionLost = errors.New("vchan simulator connection lost")

// ErrAlreadyRunning reports that another daemon holds the directory.
var ErrAlreadyRunning = errors.New("vchan-simd already running")

// Config configures a Daemon.
type Config struct {
	// Dir holds the daemon's sockets and state; empty means DefaultDir().
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
