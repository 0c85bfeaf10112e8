// Package vchantls shows crypto/tls over a vchan connection: tls.Server
// over an accepted vchan Conn, tls.Client over a dialed one, with a
// certificate the client verifies. The package has no code of its own; its
// tests are the example.
//
// crypto/tls is the standard library's: nothing to choose. vchan has no
// half-close; TLS's close_notify (tls.Conn.CloseWrite) gives one on top,
// so each side can tell "all sent" from a cut connection.
package vchantls
