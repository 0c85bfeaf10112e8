package hostenv

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		host, simDomID string
		kind           string
		domain         int
	}{
		{"", "", "", -1},
		{"xen", "", "xen", -1},
		{"sim", "", "sim", -1},
		{"sim", "4", "sim", 4},
		{"sim:3", "", "sim", 3},
		{"sim:3", "4", "sim", 3}, // sim:<domid> wins
		{"", "4", "", 4},
	} {
		s, err := parse(tc.host, tc.simDomID)
		if err != nil || s.Kind != tc.kind || s.Domain != tc.domain {
			t.Errorf("parse(%q, %q) = %+v, %v; want %s, %d", tc.host, tc.simDomID, s, err, tc.kind, tc.domain)
		}
	}
	for _, bad := range [][2]string{{"sim:", ""}, {"sim:x", ""}, {"sim:-1", ""}, {"sim:32752", ""}, {"sim:07", ""}, {"sim:/tmp/dir", ""},
		{"simulator", ""}, {"XEN", ""}, {"sim", "x"}, {"sim", "65535"}} {
		if s, err := parse(bad[0], bad[1]); err == nil {
			t.Errorf("parse(%q, %q) = %+v, want an error", bad[0], bad[1], s)
		}
	}
}
