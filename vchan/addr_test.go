package vchan

import (
	"context"
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct {
		in     string
		domain uint16
		path   string
	}{
		{"0:5000", 0, "5000"},
		{"5:web_1-a", 5, "web_1-a"},
		{"dom0:/local/domain/0/data/vchan/5/5000", 0, "/local/domain/0/data/vchan/5/5000"},
		{"32751:/a/b", MaxDomainID, "/a/b"},
	} {
		a, err := ParseAddr(tc.in)
		if err != nil || a.Domain != tc.domain || a.Path != tc.path {
			t.Errorf("ParseAddr(%q) = %+v, %v; want %d, %q", tc.in, a, err, tc.domain, tc.path)
		}
	}
	// Addr.String round-trips.
	for _, a := range []*Addr{{0, "/local/domain/0/data/vchan/5/5000"}, {7, "p"}} {
		b, err := ParseAddr(a.String())
		if err != nil || *b != *a {
			t.Errorf("ParseAddr(%q) = %+v, %v; want %+v", a.String(), b, err, a)
		}
	}
	for _, bad := range []string{"", "5000", ":5000", "0:", "x:5000", "dom:5", "-1:p", "+1:p", "32752:p", "65535:p",
		"99999999999:p", "0:a b", "0:rel/path", "0:/a//b", "0:/a/", "0:/" + strings.Repeat("a", 60), "0:p\xff", "0:pé", "0x1:p", " 0:p"} {
		if a, err := ParseAddr(bad); err == nil {
			t.Errorf("ParseAddr(%q) = %+v, want an error", bad, a)
		}
	}
}

func TestDialerChecksNetwork(t *testing.T) {
	sim := NewSimulator()
	d := &Dialer{Config: &Config{Host: sim.Domain(1)}}
	if _, err := d.DialContext(context.Background(), "tcp", "0:p"); err == nil || !strings.Contains(err.Error(), `unknown network "tcp"`) {
		t.Errorf("DialContext on tcp = %v", err)
	}
	if _, err := d.Dial("vchan", "nonsense"); err == nil || !strings.Contains(err.Error(), "want <domid>:") {
		t.Errorf("Dial with a bad address = %v", err)
	}
	lc := &ListenConfig{Config: &Config{Host: sim.Domain(0)}}
	ln, err := lc.Listen(context.Background(), "vchan", "1:p")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := ln.Addr().String(); got != "dom0:/local/domain/0/data/vchan/1/p" {
		t.Errorf("Addr = %q", got)
	}
	c, err := d.Dial("vchan", "0:p")
	if err != nil {
		t.Fatalf("Dialer.Dial to a ListenConfig's Listener: %v", err)
	}
	c.Close()
}

// FuzzParseAddr: any input is parsed or refused, never a panic, and what
// parses prints back to something that parses to the same address.
func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"0:5000", "dom3:/a/b", "", ":", "dom:", "1:/", "65535:x", "0:\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddr(s)
		if err != nil {
			return
		}
		if a.Domain > MaxDomainID {
			t.Fatalf("ParseAddr(%q) accepted domain %d", s, a.Domain)
		}
		b, err := ParseAddr(a.String())
		if err != nil || *b != *a {
			t.Fatalf("ParseAddr(%q) = %+v, but its String %q parses to %+v, %v", s, a, a.String(), b, err)
		}
	})
}
