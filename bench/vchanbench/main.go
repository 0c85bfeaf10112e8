//go:build linux

// Command vchanbench measures vchan across processes on the simulated Xen
// host and prints one table of the performance targets, every figure taken
// in the same run on the same machine:
//
//   - bulk transfer, 64 KiB writes, client to server, over each ring size of
//     -rings: Go↔Go (two Go processes), C↔C (two processes of Debian's real
//     libxenvchan through the shims of interop/shim), Go→C and C→Go;
//   - a bare ring of each size: two threads of one process moving the same
//     bytes through a ring of shared memory in the same 16 KiB chunks as a
//     Conn, with none of the protocol (no validation, no notify bits, no
//     events), spinning on each other's index: what any ring of this size
//     can do on this machine, the ceiling for vchan's figure (target: Go↔Go
//     at least 0.85 of it);
//   - the same bulk transfer over a unix socket pair between two Go
//     processes (target: Go↔Go with 1 MiB rings at least 1.5 times it);
//   - memmove on one core, in and out of cache, as context;
//   - 1-byte ping-pong round trips: Go↔Go, C↔C, unix socket pair;
//   - context switches of every process of a pair, per MiB and per round
//     trip;
//   - heap allocations per steady-state Read/Write of the Go peers;
//   - CPU used by an idle Go peer blocked in Read;
//   - under the table, each round's bulk figure, with the CPUs the pair's
//     processes kept busy (from schedstat: 2.00 is both peers running all
//     the time) and this process's share (it runs the simulator's daemon,
//     which forwards every event): a median hides a pair that is fast in
//     some rounds and slow in others.
//
// Run it from the repository root, after scripts/setup.sh (which unpacks
// the Debian packages): scripts/bench.sh does both. The driver runs the
// vchan-simd daemon in its own process and starts every peer as a separate
// process: itself with -peer for the Go peers, interop/peer/vchan-peer
// (built with interop/Makefile) for the C peers. Rounds interleave the
// pairs, so that load from other jobs on the machine hits them alike; the
// figures are medians over the rounds.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"time"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/simd/simdaemon"
	"github.com/vchan-go/vchan/internal/simd/simproto"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-peer" {
		peerMain(os.Args[2:])
		return
	}
	var o opts
	flag.IntVar(&o.rounds, "rounds", 15, "measured rounds (after one warm-up round)")
	flag.IntVar(&o.bulkMiB, "bulk", 64, "MiB per bulk pair per round")
	flag.IntVar(&o.pings, "pings", 2000, "round trips per ping pair per round")
	flag.StringVar(&o.repo, "repo", ".", "the repository root (for interop/)")
	flag.StringVar(&o.cache, "cache", "", "Debian's Xen packages unpacked (default $VCHAN_INTEROP_CACHE/root, else REPO/.cache/interop/root)")
	flag.StringVar(&o.spins, "spins", "off", "extra Go↔Go variants: comma-separated Conn.SetSpinWait values (off, or durations)")
	flag.StringVar(&o.rings, "rings", "65536,1048576", "ring sizes of the bulk rows, comma-separated bytes (powers of two from 4096)")
	flag.BoolVar(&o.noC, "no-c", false, "skip the C peers")
	flag.Parse()
	if err := drive(&o); err != nil {
		fmt.Fprintln(os.Stderr, "vchanbench:", err)
		os.Exit(1)
	}
}

type opts struct {
	rounds, bulkMiB, pings int
	repo, cache, spins     string
	rings                  string
	noC                    bool
}

// env is the running benchmark environment.
type env struct {
	tmp, build, dir, xenRoot, self string
	nextDom                        uint16
	procs                          []*proc
}

func (e *env) dom() uint16 { e.nextDom++; return e.nextDom }

// proc is one peer process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdin  *os.File
	out    *bufio.Reader
	status chan string // stderr lines starting "peer: "
	stderr strings.Builder
}

func (e *env) start(name string, env []string, extra []*os.File, prog string, args ...string) (*proc, error) {
	p := &proc{name: name, status: make(chan string, 16)}
	p.cmd = exec.Command(prog, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.ExtraFiles = extra
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = inR, outW, errW
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	inR.Close()
	outW.Close()
	errW.Close()
	p.stdin, p.out = inW, bufio.NewReader(outR)
	e.procs = append(e.procs, p)
	go func() {
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.WriteString(line + "\n") // read only after the process is gone
			if strings.HasPrefix(line, "peer: ") {
				select {
				case p.status <- line:
				default:
				}
			}
		}
		close(p.status)
	}()
	return p, nil
}

// connected waits for the peer's "peer: connected" line.
func (p *proc) connected() error {
	select {
	case line, ok := <-p.status:
		if ok && strings.HasPrefix(line, "peer: connected") {
			return nil
		}
		return fmt.Errorf("%s: %q instead of connecting", p.name, line)
	case <-time.After(20 * time.Second):
		return fmt.Errorf("%s did not connect in 20 s", p.name)
	}
}

// result is a parsed "ok" line: Go peers add mallocs, ops and gcs.
type result struct{ mallocs, ops, gcs int64 }

func (p *proc) send(n int64) error {
	_, err := fmt.Fprintf(p.stdin, "%d\n", n)
	return err
}

func (p *proc) ok() (result, error) {
	line, err := p.out.ReadString('\n')
	if err != nil {
		return result{}, fmt.Errorf("%s: %v (stderr: %s)", p.name, err, p.stderr.String())
	}
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "ok" {
		return result{}, fmt.Errorf("%s: %q", p.name, line)
	}
	var r result
	if len(f) >= 3 {
		r.mallocs, _ = strconv.ParseInt(f[1], 10, 64)
		r.ops, _ = strconv.ParseInt(f[2], 10, 64)
	}
	if len(f) >= 4 {
		r.gcs, _ = strconv.ParseInt(f[3], 10, 64)
	}
	return r, nil
}

// pair is one measured connection: the processes that take commands.
type pair struct {
	name     string
	procs    []*proc
	idle     *proc // a Go peer that blocks in Read between commands (echo)
	goPeers  bool  // reports allocations
	times    []time.Duration
	mallocs  int64
	ops      int64
	gcs      int64           // garbage collections in the peers during measured commands
	perRound []int64         // mallocs of each measured round, for the diagnostics
	switches []int64         // context switches of all the pair's processes, each measured round
	cpu      []time.Duration // CPU time of the pair's processes, each measured round
	hostCPU  []time.Duration // and of this process, which runs the simulator's daemon
	ring     int             // bulk pairs: the ring size
}

// all is every process of the pair, the idle echo server too.
func (pr *pair) all() []*proc {
	if pr.idle != nil {
		return append([]*proc{pr.idle}, pr.procs...)
	}
	return pr.procs
}

// run sends n to every process of the pair, waits for all to finish and
// records the time.
func (pr *pair) run(n int64, record bool) error {
	var switches int64
	var cpu time.Duration
	for _, p := range pr.all() {
		switches -= ctxSwitches(p.cmd.Process.Pid)
		cpu -= runTime(p.cmd.Process.Pid)
	}
	host := -runTime(os.Getpid())
	start := time.Now()
	for _, p := range pr.procs {
		if err := p.send(n); err != nil {
			return err
		}
	}
	var m int64
	for _, p := range pr.procs {
		r, err := p.ok()
		if err != nil {
			return err
		}
		m += r.mallocs
		if record {
			pr.mallocs += r.mallocs
			pr.ops += r.ops
			pr.gcs += r.gcs
		}
	}
	if record {
		pr.times = append(pr.times, time.Since(start))
		pr.perRound = append(pr.perRound, m)
		host += runTime(os.Getpid())
		for _, p := range pr.all() {
			switches += ctxSwitches(p.cmd.Process.Pid)
			cpu += runTime(p.cmd.Process.Pid)
		}
		pr.switches = append(pr.switches, switches)
		pr.cpu = append(pr.cpu, cpu)
		pr.hostCPU = append(pr.hostCPU, host)
	}
	return nil
}

// medianSwitches is the median of the rounds' context switches.
func (pr *pair) medianSwitches() int64 {
	t := slices.Clone(pr.switches)
	slices.Sort(t)
	return t[len(t)/2]
}

func (pr *pair) median() time.Duration {
	t := slices.Clone(pr.times)
	slices.Sort(t)
	return t[len(t)/2]
}

func drive(o *opts) error {
	e := &env{}
	var err error
	if e.self, err = os.Executable(); err != nil {
		return err
	}
	if e.tmp, err = os.MkdirTemp("", "vb"); err != nil {
		return err
	}
	defer os.RemoveAll(e.tmp)
	e.build, e.dir = filepath.Join(e.tmp, "b"), filepath.Join(e.tmp, "s")
	defer e.stop()

	if !o.noC {
		e.xenRoot = o.cache
		if e.xenRoot == "" {
			if c := os.Getenv("VCHAN_INTEROP_CACHE"); c != "" {
				e.xenRoot = filepath.Join(c, "root")
			} else {
				e.xenRoot = filepath.Join(o.repo, ".cache", "interop", "root")
			}
		}
		if e.xenRoot, err = filepath.Abs(e.xenRoot); err != nil {
			return err
		}
		mk := exec.Command("make", "-s", "-C", filepath.Join(o.repo, "interop"), "XEN_ROOT="+e.xenRoot, "OUT="+e.build)
		if out, err := mk.CombinedOutput(); err != nil {
			return fmt.Errorf("building the C peer and shims (run scripts/setup.sh first): %v\n%s", err, out)
		}
	}
	d, err := simdaemon.Start(simdaemon.Config{Dir: e.dir})
	if err != nil {
		return err
	}
	defer d.Close()

	goEnv := []string{simproto.DirEnv + "=" + e.dir}
	cEnv := func(dom uint16) []string {
		return []string{
			"LD_LIBRARY_PATH=" + filepath.Join(e.build, "lib") + ":" + filepath.Join(e.xenRoot, "usr/lib/x86_64-linux-gnu"),
			simproto.DirEnv + "=" + e.dir,
			"VCHAN_HOST=sim:" + strconv.Itoa(int(dom)),
			"XENSTORED_PATH=" + simproto.XenstorePath(e.dir, dom),
		}
	}
	goPeer := func(name string, server bool, dom, remote uint16, path string, ring int, mode, spin string) (*proc, error) {
		args := []string{"-peer", "-dir", e.dir, "-dom", strconv.Itoa(int(dom)), "-remote", strconv.Itoa(int(remote)),
			"-path", path, "-ring", strconv.Itoa(ring), "-mode", mode, "-spin", spin}
		if server {
			args = append(args, "-server")
		}
		return e.start(name, goEnv, nil, e.self, args...)
	}
	cPeer := func(name string, server bool, dom, remote uint16, path string, ring int, mode string) (*proc, error) {
		args := []string{"-d", strconv.Itoa(int(remote)), "-p", path, "-m", mode}
		if server {
			args = append([]string{"-s", "-r", strconv.Itoa(ring), "-w", strconv.Itoa(ring)}, args...)
		} else {
			args = append([]string{"-c"}, args...)
		}
		return e.start(name, cEnv(dom), nil, filepath.Join(e.build, "vchan-peer"), args...)
	}
	// vchanPair connects a server (lang "go" or "c") to a client.
	vchanPair := func(name, srvLang, cliLang string, ring int, srvMode, cliMode, spin string) (*pair, error) {
		s, c := e.dom(), e.dom()
		path := fmt.Sprintf("/local/domain/%d/data/vchan/%d/b", s, c)
		var sp, cp *proc
		var err error
		if srvLang == "go" {
			sp, err = goPeer(name+" server", true, s, c, path, ring, srvMode, spin)
		} else {
			sp, err = cPeer(name+" server", true, s, c, path, ring, srvMode)
		}
		if err != nil {
			return nil, err
		}
		if cliLang == "go" {
			cp, err = goPeer(name+" client", false, c, s, path, ring, cliMode, spin)
		} else {
			cp, err = cPeer(name+" client", false, c, s, path, ring, cliMode)
		}
		if err != nil {
			return nil, err
		}
		if err := sp.connected(); err != nil {
			return nil, err
		}
		if err := cp.connected(); err != nil {
			return nil, err
		}
		pr := &pair{name: name, procs: []*proc{sp, cp}, goPeers: srvLang == "go" || cliLang == "go"}
		if srvMode == "echo" {
			pr.procs = pr.procs[1:]
			if srvLang == "go" {
				pr.idle = sp
			}
		}
		return pr, nil
	}
	unixPair := func(name, srvMode, cliMode string) (*pair, error) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
		defer a.Close()
		defer b.Close()
		sp, err := e.start(name+" server", goEnv, []*os.File{a}, e.self, "-peer", "-net", "unix", "-mode", srvMode)
		if err != nil {
			return nil, err
		}
		cp, err := e.start(name+" client", goEnv, []*os.File{b}, e.self, "-peer", "-net", "unix", "-mode", cliMode)
		if err != nil {
			return nil, err
		}
		if err := sp.connected(); err != nil {
			return nil, err
		}
		if err := cp.connected(); err != nil {
			return nil, err
		}
		pr := &pair{name: name, procs: []*proc{sp, cp}, goPeers: true}
		if srvMode == "echo" {
			pr.procs, pr.idle = pr.procs[1:], sp
		}
		return pr, nil
	}

	type variant struct{ label, spin string }
	variants := []variant{{"", "default"}}
	for _, s := range strings.Split(o.spins, ",") {
		if s = strings.TrimSpace(s); s != "" && s != "default" {
			variants = append(variants, variant{" (spin " + s + ")", s})
		}
	}
	var rings []int
	for _, f := range strings.Split(o.rings, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 4096 || n&(n-1) != 0 {
			return fmt.Errorf("-rings: %q is not a power of two from 4096", f)
		}
		rings = append(rings, n)
	}
	var bulk, ping []*pair
	into := func(list *[]*pair, ring int) func(*pair, error) error {
		return func(pr *pair, err error) error {
			if err == nil {
				pr.ring = ring
				*list = append(*list, pr)
			}
			return err
		}
	}
	for _, ring := range rings {
		addBulk, rl := into(&bulk, ring), " "+sizeLabel(ring)
		for _, v := range variants {
			if err := addBulk(vchanPair("Go↔Go"+rl+v.label, "go", "go", ring, "sink", "source", v.spin)); err != nil {
				return err
			}
		}
		if !o.noC {
			if err := addBulk(vchanPair("C↔C"+rl, "c", "c", ring, "sink", "source", "")); err != nil {
				return err
			}
			if err := addBulk(vchanPair("Go→C"+rl, "c", "go", ring, "sink", "source", "default")); err != nil {
				return err
			}
			if err := addBulk(vchanPair("C→Go"+rl, "go", "c", ring, "sink", "source", "default")); err != nil {
				return err
			}
		}
	}
	if err := into(&bulk, 0)(unixPair("unix", "sink", "source")); err != nil {
		return err
	}
	addPing := into(&ping, 0)
	for _, v := range variants {
		if err := addPing(vchanPair("Go↔Go"+v.label, "go", "go", 0, "echo", "ping", v.spin)); err != nil {
			return err
		}
	}
	if !o.noC {
		if err := addPing(vchanPair("C↔C", "c", "c", 0, "echo", "ping", "")); err != nil {
			return err
		}
	}
	if err := addPing(unixPair("unix", "echo", "ping")); err != nil {
		return err
	}

	bytes := int64(o.bulkMiB) << 20
	var memmove, memmoveBig []time.Duration
	bare := make([][]time.Duration, len(rings))
	src, dst := make([]byte, 64<<10), make([]byte, 64<<10)
	const bigSize = 64 << 20
	bigSrc, bigDst := make([]byte, bigSize), make([]byte, bigSize)
	for i := range bigSrc {
		bigSrc[i] = byte(i) // touch every page: no zero-page reads, no faults while timing
	}
	copy(bigDst, bigSrc)
	bareRings := make([]*bareRing, len(rings))
	for i, ring := range rings {
		if bareRings[i], err = newBareRing(ring); err != nil {
			return err
		}
		defer bareRings[i].close()
	}
	for r := 0; r <= o.rounds; r++ {
		record := r > 0 // round 0 warms up
		for _, pr := range bulk {
			if err := pr.run(bytes, record); err != nil {
				return err
			}
		}
		start := time.Now()
		for range bytes / int64(len(src)) {
			copy(dst, src)
		}
		if record {
			memmove = append(memmove, time.Since(start))
		}
		start = time.Now()
		for range max(bytes/bigSize, 1) {
			copy(bigDst, bigSrc)
		}
		if record {
			memmoveBig = append(memmoveBig, time.Since(start)*time.Duration(bytes)/time.Duration(max(bytes/bigSize, 1)*bigSize))
		}
		for i, br := range bareRings {
			if d := br.run(bytes); record {
				bare[i] = append(bare[i], d)
			}
		}
		for _, pr := range ping {
			if err := pr.run(int64(o.pings), record); err != nil {
				return err
			}
		}
	}
	// Idle: the echo servers are blocked in Read now.
	type idleCPU struct {
		name string
		used time.Duration
	}
	var idle []idleCPU
	const idleFor = 2 * time.Second
	before := map[*pair]time.Duration{}
	for _, pr := range ping {
		if pr.idle != nil {
			before[pr] = cpuTime(pr.idle.cmd.Process.Pid)
		}
	}
	time.Sleep(idleFor)
	for _, pr := range ping {
		if pr.idle != nil {
			idle = append(idle, idleCPU{pr.name, cpuTime(pr.idle.cmd.Process.Pid) - before[pr]})
		}
	}

	// The table.
	mbps := func(d time.Duration) float64 { return float64(bytes) / d.Seconds() / 1e6 }
	us := func(d time.Duration) float64 { return d.Seconds() * 1e6 / float64(o.pings) }
	find := func(list []*pair, name string) *pair {
		for _, pr := range list {
			if pr.name == name {
				return pr
			}
		}
		return nil
	}
	med := func(t []time.Duration) time.Duration {
		t = slices.Clone(t)
		slices.Sort(t)
		return t[len(t)/2]
	}
	mm, mmBig := mbps(med(memmove)), mbps(med(memmoveBig))
	uBulk := find(bulk, "unix")
	goPing, cPing, uPing := find(ping, "Go↔Go"), find(ping, "C↔C"), find(ping, "unix")

	fmt.Printf("vchanbench %s\n", time.Now().Format("2006-01-02 15:04:05 MST"))
	fmt.Printf("machine: %s, nproc %d; %s; load average %s\n", cpuModel(), runtime.NumCPU(), runtime.Version(), loadAvg())
	fmt.Printf("%d rounds after a warm-up (medians); bulk %d MiB per pair per round in 64 KiB writes;\n", o.rounds, o.bulkMiB)
	fmt.Printf("ping-pong %d 1-byte round trips per pair per round over the default rings; every peer is its own process;\n", o.pings)
	fmt.Printf("switches: voluntary and involuntary context switches of every process of the pair, per MiB (bulk) or per round trip (ping)\n\n")
	fmt.Println("| measurement | value | switches | ratio | target | met |")
	fmt.Println("|---|---|---|---|---|---|")
	row := func(name, value, switches, ratio, target, met string) {
		fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", name, value, switches, ratio, target, met)
	}
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "**no**"
	}
	gb := func(pr *pair) string { return fmt.Sprintf("%.0f MB/s", mbps(pr.median())) }
	perMiB := func(pr *pair) string {
		return fmt.Sprintf("%.1f", float64(pr.medianSwitches())/float64(o.bulkMiB))
	}
	for i, ring := range rings {
		rl := sizeLabel(ring)
		goBulk, cBulk := find(bulk, "Go↔Go "+rl), find(bulk, "C↔C "+rl)
		gv, bv := mbps(goBulk.median()), mbps(med(bare[i]))
		for _, pr := range bulk {
			if pr.ring != ring {
				continue
			}
			name := "bulk " + pr.name
			switch {
			case pr == goBulk:
				row(name+" (two Go processes, vchan-simd)", gb(pr), perMiB(pr),
					fmt.Sprintf("Go↔Go / bare = %.2f", gv/bv), "≥ 0.85", yes(gv/bv >= 0.85))
				if uBulk != nil && ring == 1<<20 {
					r := gv / mbps(uBulk.median())
					row(name+" against a unix socket pair", "", "", fmt.Sprintf("Go↔Go / unix = %.2f", r), "≥ 1.5", yes(r >= 1.5))
				}
			case cBulk != nil && pr != cBulk:
				row(name, gb(pr), perMiB(pr), fmt.Sprintf("/ C↔C = %.2f", mbps(pr.median())/mbps(cBulk.median())), "", "")
			case pr == cBulk:
				row(name+" (libxenvchan, two processes)", gb(pr), perMiB(pr), fmt.Sprintf("Go↔Go / C↔C = %.2f", gv/mbps(pr.median())), "", "")
			default:
				row(name, gb(pr), perMiB(pr), fmt.Sprintf("/ bare = %.2f", mbps(pr.median())/bv), "", "")
			}
		}
		row("bare "+rl+" ring: two threads, 16 KiB chunks, no protocol (the ceiling for this size)", fmt.Sprintf("%.0f MB/s", bv), "", "", "", "")
	}
	if uBulk != nil {
		// What the bare ring itself has over the socket on this machine:
		// the Go↔Go / unix target cannot be met where this is below it.
		var margins []string
		for i, ring := range rings {
			margins = append(margins, fmt.Sprintf("bare %s / unix = %.2f", sizeLabel(ring), mbps(med(bare[i]))/mbps(uBulk.median())))
		}
		row("bulk unix socket pair (two Go processes)", gb(uBulk), perMiB(uBulk), strings.Join(margins, ", "), "", "")
	}
	row("memmove 64 KiB, one core, in cache (context)", fmt.Sprintf("%.0f MB/s", mm), "", "", "", "")
	row("memmove 64 MiB, one core, out of cache (context)", fmt.Sprintf("%.0f MB/s", mmBig), "", "", "", "")
	gp := us(goPing.median())
	perTrip := func(pr *pair) string {
		return fmt.Sprintf("%.2f", float64(pr.medianSwitches())/float64(o.pings))
	}
	for _, pr := range ping {
		v := fmt.Sprintf("%.2f µs", us(pr.median()))
		switch {
		case pr == goPing:
			row("ping-pong "+pr.name, v, perTrip(pr), "", "", "")
		case pr == uPing:
			row("ping-pong unix socket pair", v, perTrip(pr), fmt.Sprintf("Go↔Go / unix = %.2f", gp/us(pr.median())), "", "")
		case pr == cPing:
			row("ping-pong "+pr.name+" (libxenvchan)", v, perTrip(pr), fmt.Sprintf("Go↔Go / C↔C = %.2f", gp/us(pr.median())), "", "")
		default:
			row("ping-pong "+pr.name, v, perTrip(pr), "", "", "")
		}
	}
	var mallocs, ops, gcs int64
	var where []string
	for _, pr := range append(slices.Clone(bulk), ping...) {
		if pr.goPeers && !strings.HasPrefix(pr.name, "unix") {
			mallocs += pr.mallocs
			ops += pr.ops
			gcs += pr.gcs
			if pr.mallocs > 0 {
				where = append(where, fmt.Sprintf("%s: %d in %d (by round %v)", pr.name, pr.mallocs, pr.ops, pr.perRound))
			}
		}
	}
	if len(where) > 0 {
		fmt.Fprintf(os.Stderr, "vchanbench: allocations: %s\n", strings.Join(where, "; "))
	}
	row("heap allocations per Read/Write, Go vchan peers (the runtime's own, across processes: reported, not counted)",
		fmt.Sprintf("%d in %d calls; %d GC cycles", mallocs, ops, gcs), "",
		fmt.Sprintf("%.4f per call", float64(mallocs)/float64(max(ops, 1))), "", "")
	for _, c := range idle {
		per := c.used * time.Second / idleFor
		row("CPU of an idle Go "+c.name+" peer blocked in Read", fmt.Sprintf("%v per s", per), "",
			"(clock-tick resolution: 10 ms)", "no busy polling", yes(per <= 20*time.Millisecond))
	}
	// Each round's figure under the table (a median hides a bimodal pair);
	// for a pair (pr not nil) with the CPUs its processes kept busy (2.00:
	// both peers ran all the time) and the simulator's daemon's share.
	rounds := func(name string, t []time.Duration, pr *pair) {
		var f []string
		for i, d := range t {
			r := fmt.Sprintf("%.0f", mbps(d))
			if pr != nil {
				r += fmt.Sprintf(" (cpu %.2f+%.2f)", pr.cpu[i].Seconds()/d.Seconds(), pr.hostCPU[i].Seconds()/d.Seconds())
			}
			f = append(f, r)
		}
		fmt.Printf("rounds, MB/s: %s: %s\n", name, strings.Join(f, " "))
	}
	fmt.Println()
	for i, ring := range rings {
		for _, pr := range bulk {
			if pr.ring == ring {
				rounds(pr.name, pr.times, pr)
			}
		}
		rounds("bare "+sizeLabel(ring), bare[i], nil)
	}
	if uBulk != nil {
		rounds("unix", uBulk.times, uBulk)
	}
	return nil
}

// sizeLabel prints a ring size as the tables name it: 64 KiB, 1 MiB.
func sizeLabel(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// ctxSwitches is a process's voluntary and involuntary context switches,
// summed over its threads (/proc/PID/status counts the main thread only).
func ctxSwitches(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited meanwhile
		}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				m, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += m
			}
		}
	}
	return n
}

// runTime is the time all threads of a process have run on a CPU
// (schedstat: nanoseconds, where cpuTime has clock ticks).
func runTime(pid int) time.Duration {
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, d := range dirs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, d.Name()))
		if err != nil {
			continue // the thread exited
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

// cpuTime is the user+system CPU time of a process, from /proc.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	// After the command: state is field 3 of stat, utime 14, stime 15.
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

func cpuModel() string {
	if out, err := exec.Command("lscpu").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "Model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// stop ends the peers: it closes their stdin (a Go peer then returns from
// its command loop, closes its connection and writes its profiles if asked
// to), waits up to two seconds, and kills what is left. With
// VCHANBENCH_STDERR set it prints each peer's stderr (for GODEBUG=gctrace=1).
func (e *env) stop() {
	for _, p := range e.procs {
		_ = p.stdin.Close()
	}
	deadline := time.After(2 * time.Second)
	for _, p := range e.procs {
		exited := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			<-exited
		}
		for range p.status { // stderr read to its end
		}
		if os.Getenv("VCHANBENCH_STDERR") != "" {
			fmt.Fprintf(os.Stderr, "=== %s\n%s", p.name, p.stderr.String())
		}
	}
}
