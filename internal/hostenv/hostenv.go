// Package hostenv parses VCHAN_HOST, the environment variable that picks
// the Xen host of a vchan program, for the library and vchan-cat alike.
package hostenv

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Names of the environment variables.
const (
	Var         = "VCHAN_HOST"      // "xen", "sim" or "sim:<domid>"
	SimDomIDVar = "VCHAN_SIM_DOMID" // the domain of a "sim" host given without one
)

// maxDomainID is the highest ID a domain can have (Xen reserves the rest).
const maxDomainID = 0x7FEF

// Spec is what VCHAN_HOST says.
type Spec struct {
	// Kind is "xen", "sim", or "" when VCHAN_HOST is unset.
	Kind string
	// Domain is this process's domain on the simulator, from sim:<domid>
	// or else VCHAN_SIM_DOMID; -1 when neither gives one.
	Domain int
}

// Parse reads VCHAN_HOST and VCHAN_SIM_DOMID from the environment.
func Parse() (Spec, error) { return parse(os.Getenv(Var), os.Getenv(SimDomIDVar)) }

func parse(host, simDomID string) (Spec, error) {
	s := Spec{Kind: host, Domain: -1}
	switch {
	case host == "" || host == "xen" || host == "sim":
	case strings.HasPrefix(host, "sim:"):
		id, err := domain(strings.TrimPrefix(host, "sim:"))
		if err != nil {
			return Spec{}, fmt.Errorf("%s=%s: want xen, sim or sim:<domid>: %v", Var, strconv.Quote(host), err)
		}
		s.Kind, s.Domain = "sim", id
	default:
		return Spec{}, fmt.Errorf("%s=%s: unknown host (want xen, sim or sim:<domid>)", Var, strconv.Quote(host))
	}
	if s.Domain < 0 && simDomID != "" {
		id, err := domain(simDomID)
		if err != nil {
			return Spec{}, fmt.Errorf("%s=%s: %v", SimDomIDVar, strconv.Quote(simDomID), err)
		}
		s.Domain = id
	}
	return s, nil
}

// domain parses a decimal domain ID strictly.
func domain(v string) (int, error) {
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n > maxDomainID || v != strconv.FormatUint(n, 10) {
		return 0, fmt.Errorf("%q is not a domain ID 0..%d", v, maxDomainID)
	}
	return int(n), nil
}
