// Command gopeer is the Go end of the interop tests that must kill a Go
// vchan peer with SIGKILL: a process the test can kill, unlike itself. It
// joins the simulator through vchan.DefaultHost (VCHAN_HOST=sim:<domid>),
// serves or dials one vchan, prints "gopeer: connected" on stderr and then
// copies stdin to the vchan and the vchan to stdout.
//
//	gopeer -server -remote 1 -path /local/domain/0/data/vchan/1/7
//	gopeer -remote 0 -path /local/domain/0/data/vchan/1/7
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/vchan-go/vchan/vchan"
)

func main() {
	server := flag.Bool("server", false, "serve the vchan (default: dial it)")
	remote := flag.Uint("remote", 0, "the other domain: the client (with -server) or the server")
	path := flag.String("path", "", "port or absolute xenstore path")
	flag.Parse()
	if err := run(*server, uint16(*remote), *path); err != nil {
		fmt.Fprintln(os.Stderr, "gopeer:", err)
		os.Exit(1)
	}
}

func run(server bool, remote uint16, path string) error {
	var c *vchan.Conn
	if server {
		ln, err := vchan.Listen(remote, path, nil)
		if err != nil {
			return err
		}
		if c, err = ln.AcceptVchan(); err != nil {
			return err
		}
		ln.Close()
	} else {
		var err error
		if c, err = vchan.Dial(remote, path, &vchan.Config{WaitForServer: true}); err != nil {
			return err
		}
	}
	defer c.Close()
	fmt.Fprintln(os.Stderr, "gopeer: connected")
	go func() {
		_, _ = io.Copy(c, os.Stdin)
	}()
	_, err := io.Copy(os.Stdout, c)
	return err
}
