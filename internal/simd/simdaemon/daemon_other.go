//go:build !linux

package simdaemon

import "github.com/vchan-go/vchan/internal/simd/simproto"

// The daemon hands out memfds over SOCK_SEQPACKET sockets (SCM_RIGHTS) and
// reopens them read-only through /proc: Linux only. Elsewhere Start fails
// and says so; the in-process simulator (vchan.NewSimulator) works
// everywhere.

// Daemon is a running simulated Xen host; off Linux none can be started.
// Its methods exist so that callers compile; no Daemon is ever returned
// here.
type Daemon struct{}

// Start fails off Linux, with an error wrapping errors.ErrUnsupported.
func Start(Config) (*Daemon, error) { return nil, simproto.NeedsLinux("vchan simulator daemon") }

func (*Daemon) Dir() string                { return "" }
func (*Daemon) Close() error               { return nil }
func (*Daemon) Resources(uint16) Resources { return Resources{} }
