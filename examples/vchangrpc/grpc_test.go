package vchangrpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"

	"github.com/vchan-go/vchan/examples/internal/testenv"
	"github.com/vchan-go/vchan/vchan"
)

const port = "grpc"

// testService implements the unary and the full-duplex methods of the
// interop TestService: each echoes the payload it gets, and the unary call
// also says who the client is as the server sees it.
type testService struct {
	testpb.UnimplementedTestServiceServer
}

func (testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, errors.New("no peer in the context")
	}
	return &testpb.SimpleResponse{
		Payload:  &testpb.Payload{Body: req.GetPayload().GetBody()},
		Hostname: p.Addr.Network() + " " + p.Addr.String(),
	}, nil
}

func (testService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

// TestGRPC: one unary call and one bidirectional stream of 100 messages,
// each echoed and checked, over one vchan connection.
func TestGRPC(t *testing.T) {
	for _, h := range []struct {
		name string
		pair func(testing.TB) testenv.Pair
	}{{"sim", testenv.InProcess}, {"simd", testenv.CrossProcess}} {
		t.Run(h.name, func(t *testing.T) {
			testenv.CheckGoroutines(t)
			p := h.pair(t)
			ctx := testenv.Context(t, time.Minute)
			testGRPC(t, ctx, p)
			p.CheckReleased(t)
		})
	}
}

func testGRPC(t *testing.T, ctx context.Context, p testenv.Pair) {
	ln, err := vchan.Listen(1, port, &vchan.Config{Host: p.Server, ReadBufferSize: 65536, WriteBufferSize: 65536})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, testService{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		select {
		case err := <-served:
			t.Errorf("Serve returned before Stop: %v", err)
			return
		default:
		}
		srv.GracefulStop()
		if err := testenv.Wait(t, ctx, served, "Serve to return"); err != nil {
			t.Errorf("Serve returned %v after GracefulStop, want nil", err)
		}
	}()

	d := &vchan.Dialer{Config: &vchan.Config{Host: p.Client}}
	conn, err := grpc.NewClient("passthrough:///vchan",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "vchan", "0:"+port)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)

	// Unary: 100 KB, more than a ring holds.
	body := testenv.Data(1, 100_000)
	resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}})
	if err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	if !bytes.Equal(resp.GetPayload().GetBody(), body) {
		t.Errorf("UnaryCall echoed %d bytes, not the %d sent", len(resp.GetPayload().GetBody()), len(body))
	}
	if want := "vchan dom1:" + vchan.PortPath(0, 1, port); resp.GetHostname() != want {
		t.Errorf("the server saw the client as %q, want %q", resp.GetHostname(), want)
	}

	// Bidirectional: 100 messages of 1 byte to 40 KB, sent while the
	// replies are read, each reply checked against its request.
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatalf("FullDuplexCall: %v", err)
	}
	const n = 100
	msg := func(i int) []byte { return testenv.Data(uint64(100+i), 1+i*4099%40000) }
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: msg(i)}}); err != nil {
				sent <- fmt.Errorf("Send %d: %w", i, err)
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	for i := range n {
		r, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		if want := msg(i); !bytes.Equal(r.GetPayload().GetBody(), want) {
			t.Fatalf("reply %d: %d bytes, not the %d bytes of request %d", i, len(r.GetPayload().GetBody()), len(want), i)
		}
	}
	if err := testenv.Wait(t, ctx, sent, "the sender"); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != io.EOF {
		t.Fatalf("after %d replies: got %v, %v; want io.EOF", n, r, err)
	}
}
