package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/vchan-go/vchan/internal/evtchn"
	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xsclient"
	"github.com/vchan-go/vchan/vchan"
)

// eventRoundTrips times n round trips of a bare event channel between two
// domains, with no ring and no vchan: the server binds an unbound port for
// the peer and writes its number to path; the client binds to it, sends an
// event, and waits for the server's answer, n times. Both wait the way the
// library waits (evtchn.Channel.Wait: a short blocking ppoll, then the
// runtime's poller) and never spin. It is the floor under the library's
// round trip with spinning off: the client prints "rtt-ns <mean>". The
// two alternate strictly, so no event is lost to coalescing.
func eventRoundTrips(n int, role string, peer uint16, path string, wait time.Duration) error {
	dev, err := evtchn.Open()
	if err != nil {
		return err
	}
	defer dev.Close()
	xs, err := xsclient.Dial()
	if err != nil {
		return err
	}
	defer xs.Close()
	var ch evtchn.Channel
	if role == "server" {
		if ch, err = dev.BindUnbound(peer); err != nil {
			return err
		}
		own, err := vchan.XenHost().DomainID()
		if err != nil {
			return err
		}
		if err := xs.Write(path, []byte(strconv.Itoa(int(ch.LocalPort())))); err != nil {
			return err
		}
		defer xs.Rm(path)
		if err := xs.SetPerms(path, []xenstore.Perm{{Domain: own, Access: xenstore.AccessNone}, {Domain: peer, Access: xenstore.AccessRead}}); err != nil {
			return err
		}
	} else {
		var port uint64
		for end := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
			v, err := xs.Read(path)
			if err == nil {
				if port, err = strconv.ParseUint(string(v), 10, 32); err != nil {
					return fmt.Errorf("port %q at %s: %w", v, path, err)
				}
				break
			}
			if time.Now().After(end) {
				return fmt.Errorf("no port at %s: %w", path, err)
			}
		}
		if ch, err = dev.BindInterdomain(peer, evtchn.Port(port)); err != nil {
			return err
		}
		// Xen marks a freshly bound port pending (an event the unbound
		// port may have missed): take it, or it would pass for the
		// first answer.
		if err := ch.Wait(time.Now().Add(100 * time.Millisecond)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
	defer ch.Close()

	// No deadlines: computing one reads the clock, which the library's
	// Read without a deadline does not. The lab's timeout bounds a hang.
	client := role == "client"
	start := time.Now()
	for i := 0; i < n; i++ {
		if client {
			if err := ch.Notify(); err != nil {
				return err
			}
		}
		if err := ch.Wait(time.Time{}); err != nil {
			return fmt.Errorf("round trip %d of %d: %w", i, n, err)
		}
		if !client {
			if err := ch.Notify(); err != nil {
				return err
			}
		}
	}
	if client {
		fmt.Fprintf(os.Stderr, "rtt-ns %d\n", time.Since(start).Nanoseconds()/int64(n))
	}
	return nil
}
