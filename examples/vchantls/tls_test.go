package vchantls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"testing"
	"time"

	"github.com/vchan-go/vchan/examples/internal/testenv"
	"github.com/vchan-go/vchan/vchan"
)

// selfSigned returns a fresh ECDSA P-256 certificate for the name "vchan",
// and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vchan"},
		DNSNames:              []string{"vchan"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// TestTLS: a TLS 1.3 handshake with certificate verification over a vchan,
// then 1 MiB each way at the same time, each side checking the count and
// SHA-256 of what it read up to the peer's close_notify. Run with the
// default 1 KiB/2 KiB rings and with 64 KiB rings.
func TestTLS(t *testing.T) {
	for _, ring := range []int{0, 65536} {
		t.Run(fmt.Sprintf("rings-%d", ring), func(t *testing.T) {
			testenv.CheckGoroutines(t)
			p := testenv.InProcess(t)
			ctx := testenv.Context(t, time.Minute)
			cert, pool := selfSigned(t)

			srvRaw, raw := p.Connect(t, ctx, "tls", ring)

			srv := tls.Server(srvRaw, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
			cli := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "vchan", MinVersion: tls.VersionTLS13})

			const size = 1 << 20
			results := make(chan error, 2)
			go func() { results <- exchange(srv, testenv.Data(1, size), testenv.Data(2, size)) }()
			go func() { results <- exchange(cli, testenv.Data(2, size), testenv.Data(1, size)) }()
			for range 2 {
				if err := testenv.Wait(t, ctx, results, "the exchange"); err != nil {
					t.Error(err)
				}
			}
			if st := cli.ConnectionState(); !st.HandshakeComplete || st.Version != tls.VersionTLS13 || !st.PeerCertificates[0].Equal(cert.Leaf) {
				t.Errorf("client's view of the handshake: complete %v, version %#x, peer certificate as expected %v",
					st.HandshakeComplete, st.Version, len(st.PeerCertificates) > 0 && st.PeerCertificates[0].Equal(cert.Leaf))
			}
			for _, c := range []*tls.Conn{cli, srv} {
				if err := c.Close(); err != nil {
					t.Errorf("closing: %v", err)
				}
			}
			p.CheckReleased(t)
		})
	}
}

// exchange handshakes, then writes out and ends it with close_notify
// while it reads the peer's data up to its close_notify, and checks that
// it got exactly want.
func exchange(c *tls.Conn, out, want []byte) error {
	if err := c.Handshake(); err != nil {
		return fmt.Errorf("%s: handshake: %w", side(c), err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		if err == nil {
			err = c.CloseWrite() // sends close_notify; the vchan stays open
		}
		wrote <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c) // up to the peer's close_notify: io.EOF
	if err != nil {
		return fmt.Errorf("%s: reading after %d bytes: %w", side(c), n, err)
	}
	if err := <-wrote; err != nil {
		return fmt.Errorf("%s: writing: %w", side(c), err)
	}
	if sum := sha256.Sum256(want); n != int64(len(want)) || [32]byte(h.Sum(nil)) != sum {
		return fmt.Errorf("%s: read %d bytes with SHA-256 %x, want %d bytes with %x", side(c), n, h.Sum(nil), len(want), sum)
	}
	return nil
}

func side(c *tls.Conn) string {
	if c.LocalAddr().(*vchan.Addr).Domain == 0 {
		return "server"
	}
	return "client"
}
