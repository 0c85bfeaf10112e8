package vchan

import (
	"fmt"
	"os"
	"strings"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/gnt"
	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xsclient"
)

func newXenHost() *Host {
	return &Host{
		name: "xen",
		openXS: func() (xenstore.Client, error) {
			c, err := xsclient.Dial()
			if err != nil {
				return nil, xenError(err)
			}
			return c, nil
		},
		openSharer: func() (gnt.Sharer, error) { return wrapOpen(gnt.OpenSharer()) },
		openMapper: func() (gnt.Mapper, error) { return wrapOpen(gnt.OpenMapper()) },
		openEvtchn: func() (evtchn.Device, error) { return wrapOpen(evtchn.Open()) },
	}
}

func wrapOpen[T any](v T, err error) (T, error) {
	if err != nil {
		return v, xenError(err)
	}
	return v, nil
}

// hypervisorTypePath says which hypervisor the kernel runs on, if any.
var hypervisorTypePath = "/sys/hypervisor/type"

// xenError puts a device error in context: on a machine that is not a Xen
// domain at all, the first thing to say is that, and how to work without it.
func xenError(err error) error {
	if b, rerr := os.ReadFile(hypervisorTypePath); rerr != nil || strings.TrimSpace(string(b)) != "xen" {
		return fmt.Errorf("not running under Xen (%s does not say \"xen\"); to develop without Xen, start the simulator (vchan-simd) and set VCHAN_HOST=sim:<domid>, or use vchan.NewSimulator in tests — %w", hypervisorTypePath, err)
	}
	return fmt.Errorf("xen host: %w", err)
}
