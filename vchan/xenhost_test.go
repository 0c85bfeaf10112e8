package vchan

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/testutil"
)

// TestOutsideXen: on a machine without Xen, Listen and Dial on the real host
// fail at once, with a message that says what is missing and how to fix it.
func TestOutsideXen(t *testing.T) {
	if _, err := os.Stat("/dev/xen/evtchn"); err == nil {
		t.Skip("this machine has /dev/xen/evtchn: the outside-Xen messages cannot be observed")
	}
	t.Setenv("XENSTORED_PATH", testutil.SocketDir(t)+"/no-such-socket")
	h := newXenHost() // not the cached XenHost: each call must try afresh
	start := time.Now()
	_, lerr := Listen(1, "5000", &Config{Host: h})
	_, derr := Dial(0, "5000", &Config{Host: newXenHost()})
	if time.Since(start) > 2*time.Second {
		t.Errorf("failing outside Xen took %v", time.Since(start))
	}
	for _, err := range []error{lerr, derr} {
		var oe *net.OpError
		if !errors.As(err, &oe) {
			t.Fatalf("error %v is not a *net.OpError", err)
		}
		for _, want := range []string{"not running under Xen", "simulator"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	}
	// Each device, opened directly, names its module.
	for name, open := range map[string]func() error{
		"xen-gntalloc": func() error { _, err := h.openSharer(); return err },
		"xen-gntdev":   func() error { _, err := h.openMapper(); return err },
		"xen-evtchn":   func() error { _, err := h.openEvtchn(); return err },
	} {
		err := open()
		if err == nil || !strings.Contains(err.Error(), "modprobe "+name) {
			t.Errorf("opening the %s device: %v; want a hint to modprobe it", name, err)
		}
	}
}

func TestDefaultHostEnv(t *testing.T) {
	t.Setenv(HostEnv, "bogus")
	if _, err := DefaultHost(); err == nil || !strings.Contains(err.Error(), HostEnv) {
		t.Errorf("DefaultHost with %s=bogus = %v, want an error naming the variable", HostEnv, err)
	}
	t.Setenv(HostEnv, "")
	if h, err := DefaultHost(); err != nil || h != XenHost() {
		t.Errorf("DefaultHost with %s unset = %v, %v; want XenHost", HostEnv, h, err)
	}
}
