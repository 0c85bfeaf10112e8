package vchan

import (
	"errors"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/xenstore"
)

// errNoXenSupport is returned until the real device layer is wired in.
var errNoXenSupport = errors.New("the real Xen host is not supported by this build yet; use a Simulator")

func newXenHost() *Host {
	return &Host{
		name:       "xen",
		openXS:     func() (xenstore.Client, error) { return nil, errNoXenSupport },
		openSharer: func() (gnt.Sharer, error) { return nil, errNoXenSupport },
		openMapper: func() (gnt.Mapper, error) { return nil, errNoXenSupport },
		openEvtchn: func() (evtchn.Device, error) { return nil, errNoXenSupport },
	}
}
