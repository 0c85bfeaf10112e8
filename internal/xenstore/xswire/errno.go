package xswire

import (
	"bytes"
	"syscall"
)

// errnoNames is the xsd_errors table of xs_wire.h (docs/PROTOCOL.md §13.4), in
// its order: an ERROR reply carries the errno's name, not its number, so
// that the protocol does not depend on the host's errno numbering.
var errnoNames = [...]struct {
	errno syscall.Errno
	name  string
}{
	{syscall.EINVAL, "EINVAL"},
	{syscall.EACCES, "EACCES"},
	{syscall.EEXIST, "EEXIST"},
	{syscall.EISDIR, "EISDIR"},
	{syscall.ENOENT, "ENOENT"},
	{syscall.ENOMEM, "ENOMEM"},
	{syscall.ENOSPC, "ENOSPC"},
	{syscall.EIO, "EIO"},
	{syscall.ENOTEMPTY, "ENOTEMPTY"},
	{syscall.ENOSYS, "ENOSYS"},
	{syscall.EROFS, "EROFS"},
	{syscall.EBUSY, "EBUSY"},
	{syscall.EAGAIN, "EAGAIN"},
	{syscall.EISCONN, "EISCONN"},
	{syscall.E2BIG, "E2BIG"},
	{syscall.EPERM, "EPERM"},
}

// QuotaName is the error name oxenstored sends when a domain exceeds one of
// its quotas (transactions, watches, nodes, requests per transaction). It is
// not in xs_wire.h's table, so libxenstore reads it as EINVAL; here it is
// EDQUOT, so that callers can tell a quota from a bad request
// (docs/PROTOCOL.md §13.4).
const QuotaName = "EQUOTA"

// ErrnoFromName maps an error name from an ERROR reply to its errno. Like
// libxenstore's get_error, a name outside the table gives EINVAL, except
// oxenstored's QuotaName, which gives EDQUOT.
func ErrnoFromName(name string) syscall.Errno {
	for _, e := range errnoNames {
		if e.name == name {
			return e.errno
		}
	}
	if name == QuotaName {
		return syscall.EDQUOT
	}
	return syscall.EINVAL
}

// ErrnoName returns the wire name of e, and false when e is not in the
// protocol's table.
func ErrnoName(e syscall.Errno) (string, bool) {
	for _, x := range errnoNames {
		if x.errno == e {
			return x.name, true
		}
	}
	return "", false
}

// ErrorPayload returns the payload of an ERROR reply for e: its name and a
// NUL. Like C xenstored's send_error, an errno outside the table is sent
// as EINVAL.
func ErrorPayload(e syscall.Errno) []byte {
	name, ok := ErrnoName(e)
	if !ok {
		name = "EINVAL"
	}
	return append([]byte(name), 0)
}

// ParseErrorPayload returns the errno an ERROR reply's payload names. It
// reads the name up to the first NUL, or the whole payload when there is
// none (libxenstore NUL-terminates every body it reads), so a missing
// terminator is tolerated; an unknown or empty name gives EINVAL.
func ParseErrorPayload(p []byte) syscall.Errno {
	if i := bytes.IndexByte(p, 0); i >= 0 {
		p = p[:i]
	}
	return ErrnoFromName(string(p))
}
