package xenstore

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// The special watch paths (docs/PROTOCOL.md §13.3). They name no node and are
// valid only for Watch and Unwatch.
const (
	IntroduceDomainPath = "@introduceDomain"
	ReleaseDomainPath   = "@releaseDomain"
)

// Path length limits (docs/PROTOCOL.md §13.3, WIRE 120-121).
const (
	MaxAbsPathLen = 3072 // longest absolute path, in bytes
	MaxRelPathLen = 2048 // longest relative path, in bytes
)

// DomainPath returns the home path of domain domid, /local/domain/<domid>,
// against which that domain's relative paths resolve.
func DomainPath(domid uint16) string {
	return "/local/domain/" + strconv.FormatUint(uint64(domid), 10)
}

// IsSpecialPath reports whether p is one of the special watch paths
// @introduceDomain and @releaseDomain.
func IsSpecialPath(p string) bool {
	return p == IntroduceDomainPath || p == ReleaseDomainPath
}

// ValidPath reports whether p is a syntactically valid node path, absolute or
// relative: only alphanumerics and "-/_@", no doubled slash, no trailing slash
// (except the root "/"), not empty, and within the length limits. The special
// watch paths are not node paths.
func ValidPath(p string) bool {
	_, _, errno := resolve(0, p, false)
	return errno == 0
}

// ResolvePath validates p as a node path (see ValidPath) and returns it in
// absolute form, resolving a relative path against DomainPath(domid). The
// error wraps syscall.EINVAL.
func ResolvePath(domid uint16, p string) (string, error) {
	abs, _, errno := resolve(domid, p, false)
	if errno != 0 {
		return "", fmt.Errorf("xenstore: invalid path %s: %w", quoteTrunc(p), errno)
	}
	return abs, nil
}

// ResolveWatchPath validates p as a watch path: a node path (see ValidPath),
// resolved as ResolvePath does, or one of the special paths, returned
// unchanged. relative reports whether p was resolved against
// DomainPath(domid): a watch registered so reports its events relative to
// it. The error wraps syscall.EINVAL.
func ResolveWatchPath(domid uint16, p string) (abs string, relative bool, err error) {
	abs, relative, errno := resolve(domid, p, true)
	if errno != 0 {
		return "", false, fmt.Errorf("xenstore: invalid watch path %s: %w", quoteTrunc(p), errno)
	}
	return abs, relative, nil
}

// resolve validates p and returns its absolute form and whether p was
// relative. With allowSpecial, the special watch paths are accepted and
// returned unchanged.
func resolve(domid uint16, p string, allowSpecial bool) (abs string, relative bool, errno syscall.Errno) {
	if p == "" {
		return "", false, syscall.EINVAL
	}
	if p[0] == '@' {
		if allowSpecial && IsSpecialPath(p) {
			return p, false, 0
		}
		return "", false, syscall.EINVAL
	}
	if p[0] == '/' {
		if len(p) > MaxAbsPathLen || !validSyntax(p) {
			return "", false, syscall.EINVAL
		}
		return p, false, 0
	}
	if len(p) > MaxRelPathLen || !validSyntax(p) {
		return "", false, syscall.EINVAL
	}
	return DomainPath(domid) + "/" + p, true, 0
}

// validSyntax checks the characters and slashes of a non-empty path.
func validSyntax(p string) bool {
	if p == "/" {
		return true
	}
	if p[len(p)-1] == '/' || strings.Contains(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '/', c == '_', c == '@':
		default:
			return false
		}
	}
	return true
}
