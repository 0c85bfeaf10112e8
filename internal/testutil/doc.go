// Package testutil is the scaffolding of the tests that start processes or
// the simulator daemon: one way to build a command, to make a directory for
// unix sockets, to start the daemon (in the test process or as vchan-simd),
// to join it as a domain, and one type for a process under test.
//
//   - BuildCmd builds a command of this module once per test binary, into
//     a directory that Run removes: a test binary that calls BuildCmd
//     has a TestMain that calls os.Exit(testutil.Run(m)), or Main.
//   - SocketDir makes a short directory for unix sockets, never under
//     t.TempDir(): a socket path is limited to 107 bytes, which a long
//     $TMPDIR and test name can pass.
//   - StartDaemon runs the simulator daemon in the test process; StartSimd
//     runs vchan-simd as a process; Join joins a simulator as a domain
//     (with simclient.Connect, or vchan.SimHost above package vchan); and
//     Xenstore connects to a domain's xenstored socket.
//   - Proc is a process under test: its stderr in a SyncBuffer, a line
//     waiter (WaitLine, WaitFor), pipes for stdin and stdout, Wait,
//     MustExit and Kill; the test's cleanup kills it. NewChild re-executes
//     the test binary as a helper process, which Main (the TestMain)
//     dispatches to.
//
// It must not import package vchan: vchan's own tests use it.
package testutil
