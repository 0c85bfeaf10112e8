//go:build !linux

package simd

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/xenstore"
)

// The daemon hands out memfds over SOCK_SEQPACKET sockets (SCM_RIGHTS) and
// reopens them read-only through /proc: Linux only. Elsewhere Start and
// Connect fail and say so; the in-process simulator (vchan.NewSimulator)
// works everywhere.

func errNeedsLinux(what string) error {
	return fmt.Errorf("%s: needs Linux (memfd, SCM_RIGHTS); this is %s: %w", what, runtime.GOOS, errors.ErrUnsupported)
}

// Daemon is a running simulated Xen host; off Linux none can be started.
type Daemon struct{}

// Start fails off Linux, with an error wrapping errors.ErrUnsupported.
func Start(Config) (*Daemon, error) { return nil, errNeedsLinux("vchan simulator daemon") }

// The methods of Daemon and Domain exist so that callers compile; no
// Daemon or Domain is ever returned here.

func (*Daemon) Dir() string                { return "" }
func (*Daemon) Close() error               { return nil }
func (*Daemon) Resources(uint16) Resources { return Resources{} }
func (*Daemon) Domains() []uint16          { return nil }

// Domain is a process's membership of the simulator; off Linux there is
// none.
type Domain struct{}

// Connect fails off Linux, with an error wrapping errors.ErrUnsupported.
func Connect(string, uint16) (*Domain, error) {
	return nil, errNeedsLinux("vchan simulator: the vchan-simd daemon (vchan.NewSimulator works here, within one process)")
}

func (*Domain) DomainID() uint16                   { return 0 }
func (*Domain) Dir() string                        { return "" }
func (*Domain) Xenstore() (xenstore.Client, error) { return nil, errNeedsLinux("vchan simulator") }
func (*Domain) Sharer() gnt.Sharer                 { return unsupported{} }
func (*Domain) Mapper() gnt.Mapper                 { return unsupported{} }
func (*Domain) Evtchn() evtchn.Device              { return unsupported{} }
func (*Domain) Close() error                       { return nil }

// unsupported is every device of a Domain: a zero Domain fails instead of
// panicking.
type unsupported struct{}

func (unsupported) Share(uint16, int, *gnt.UnmapNotify) (gnt.SharedRegion, error) {
	return nil, errNeedsLinux("vchan simulator")
}

func (unsupported) Map(uint16, []gnt.Ref, bool, *gnt.UnmapNotify) (gnt.Region, error) {
	return nil, errNeedsLinux("vchan simulator")
}

func (unsupported) BindUnbound(uint16) (evtchn.Channel, error) {
	return nil, errNeedsLinux("vchan simulator")
}

func (unsupported) BindInterdomain(uint16, evtchn.Port) (evtchn.Channel, error) {
	return nil, errNeedsLinux("vchan simulator")
}

func (unsupported) Close() error { return nil }
