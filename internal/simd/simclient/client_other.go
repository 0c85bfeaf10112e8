//go:build !linux

package simclient

import (
	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/simd/simproto"
	"github.com/vchan-go/vchan/internal/xenstore"
)

// The daemon hands out memfds over SOCK_SEQPACKET sockets (SCM_RIGHTS) and
// reopens them read-only through /proc: Linux only. Elsewhere Connect fails
// and says so; the in-process simulator (vchan.NewSimulator) works
// everywhere.

var errNeedsLinux = simproto.NeedsLinux

// Domain is a process's membership of the simulator; off Linux there is
// none. Its methods exist so that callers compile; no Domain is ever
// returned here.
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
