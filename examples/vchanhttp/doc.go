// Package vchanhttp shows net/http running over vchan: an http.Server
// serving on a vchan Listener and an http.Client whose Transport dials a
// vchan instead of TCP. The package has no code of its own; its tests are
// the example.
//
// The client side is a three-line DialContext that ignores the TCP address
// net/http asks for and dials the vchan instead:
//
//	d := &vchan.Dialer{Config: &vchan.Config{Host: host}}
//	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
//		return d.DialContext(ctx, "vchan", "0:web") // server domain 0, port "web"
//	}}
//
// net/http is the standard library's: nothing to choose.
package vchanhttp
