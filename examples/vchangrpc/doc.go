// Package vchangrpc shows gRPC running over vchan: grpc.Server.Serve on a
// vchan Listener, and a client whose grpc.WithContextDialer dials the
// vchan. The package has no code of its own; its tests are the example.
//
//	d := &vchan.Dialer{Config: &vchan.Config{Host: host}}
//	conn, err := grpc.NewClient("passthrough:///vchan",
//		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
//			return d.DialContext(ctx, "vchan", "0:grpc")
//		}),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// Why google.golang.org/grpc: it is gRPC's own Go implementation, kept by
// the gRPC project with monthly releases, and the RPC framework Go programs
// use most; its HTTP/2 transport (flow control, many streams on one
// connection, keepalive pings) is a demanding user of a net.Conn. The
// service is grpc-go's own interop test service
// (google.golang.org/grpc/interop/grpc_testing, generated code shipped in
// the grpc module), so the tests need no protoc and no generated code of
// their own, and implement real unary and bidirectional-streaming methods.
package vchangrpc
