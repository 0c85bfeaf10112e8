package vchan_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"

	"github.com/vchan-go/vchan/vchan"
)

// A server in domain 0 for domain 5, and its client in domain 5. On Xen each
// half runs in its own domain with a nil Config (the real devices); here a
// Simulator stands in for both domains.
func Example() {
	sim := vchan.NewSimulator()
	ln, err := vchan.Listen(5, "5000", &vchan.Config{Host: sim.Domain(0)})
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo
	}()

	c, err := vchan.Dial(0, "5000", &vchan.Config{Host: sim.Domain(5)})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "hello")
	buf := make([]byte, 5)
	io.ReadFull(c, buf)
	fmt.Println(string(buf))
	// Output: hello
}

// Listen and Accept: one client domain per Listener, clients served one
// after another, as with any net.Listener.
func ExampleListen() {
	sim := vchan.NewSimulator()
	ln, err := vchan.Listen(7, "greet", &vchan.Config{Host: sim.Domain(0), ReadBufferSize: 65536, WriteBufferSize: 65536})
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(ln.Addr())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			fmt.Fprintf(c, "hello, %v\n", c.RemoteAddr())
			c.Close()
		}
	}()
	c, err := vchan.Dial(0, "greet", &vchan.Config{Host: sim.Domain(7)})
	if err != nil {
		log.Fatal(err)
	}
	line, _ := io.ReadAll(c)
	fmt.Print(string(line))
	// Output:
	// dom0:/local/domain/0/data/vchan/7/greet
	// hello, dom7:/local/domain/0/data/vchan/7/greet
}

// A Dial to a port nobody listens on is refused at once, like TCP's.
func ExampleDial_refused() {
	sim := vchan.NewSimulator()
	_, err := vchan.Dial(0, "nobody", &vchan.Config{Host: sim.Domain(3)})
	fmt.Println(err)
	// Output: dial vchan dom0:/local/domain/0/data/vchan/3/nobody: no vchan server is listening at /local/domain/0/data/vchan/3/nobody for domain 3 (or it is not visible to this domain): connection refused
}

// The in-process Simulator: domains, grants, event channels and xenstore in
// one process, for tests, as net.Pipe stands in for a network.
func ExampleSimulator() {
	sim := vchan.NewSimulator()
	ln, err := vchan.Listen(1, "test", &vchan.Config{Host: sim.Domain(0)})
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(sim.Resources(0).Granted > 0, sim.Resources(0).Ports)
	// Output: true 1
}

// net/http over vchan: the server serves a vchan Listener, and the client's
// Transport dials through a Dialer. The URL's host is not used; the
// Transport's DialContext picks the vchan address.
func ExampleDialer_http() {
	sim := vchan.NewSimulator()
	ln, err := (&vchan.ListenConfig{Config: &vchan.Config{Host: sim.Domain(0)}}).Listen(context.Background(), "vchan", "1:web")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello over %s", r.RemoteAddr)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	d := &vchan.Dialer{Config: &vchan.Config{Host: sim.Domain(1)}}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "vchan", "0:web")
		},
	}}
	resp, err := client.Get("http://dom0/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(strings.TrimSpace(string(body)))
	// Output: hello over dom1:/local/domain/0/data/vchan/1/web
}

// ParseAddr reads what Addr.String prints, and the addresses Dialer and
// ListenConfig take.
func ExampleParseAddr() {
	a, err := vchan.ParseAddr("dom0:/local/domain/0/data/vchan/5/5000")
	fmt.Println(a.Domain, a.Path, err)
	b, _ := vchan.ParseAddr("0:5000")
	fmt.Println(b.Domain, b.Path)
	_, err = vchan.ParseAddr("0x7ff0:p")
	fmt.Println(err)
	// Output:
	// 0 /local/domain/0/data/vchan/5/5000 <nil>
	// 0 5000
	// vchan address "0x7ff0:p": domain "0x7ff0" is not a decimal domain ID 0..32751
}
