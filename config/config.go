package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/vipspeaker/vipspeaker/routing"
)

// FileName is the name of the file in a config directory or ConfigMap.
const FileName = "vipspeaker.toml"

// Defaults.
const (
	DefaultInterfaceName      = "kube-lb0"
	DefaultInterfaceKind      = KindDummy
	DefaultGratuitousCount    = 3
	DefaultGratuitousInterval = 500 * time.Millisecond
	DefaultFastPath           = FastPathAuto
)

// InterfaceKind is the link type of the VIP interface.
type InterfaceKind string

const (
	KindDummy InterfaceKind = "dummy"
	KindIFB   InterfaceKind = "ifb"
)

// FastPath selects the eBPF ARP/NDP fast path.
type FastPath string

const (
	FastPathAuto FastPath = "auto" // XDP when it loads, else userspace, quietly
	FastPathXDP  FastPath = "xdp"  // XDP or fail
	FastPathOff  FastPath = "off"  // userspace only
)

// CountersFallback says what counts each VIP's received traffic where the
// XDP fast path does not run ([vip-counters] fallback).
type CountersFallback string

const (
	CountersNFTables CountersFallback = "nftables" // an nftables set with a counter per VIP (default)
	CountersOff      CountersFallback = "off"      // no per-VIP counters without XDP
)

// Config is a parsed and validated vipspeaker.toml.
type Config struct {
	// DefaultClass: also handle LoadBalancer Services that name no class.
	DefaultClass bool
	Interface    Interface
	Pools        []Pool
	Layer2       Layer2
	Membership   Membership
	PeerNodes    []PeerNodes
	// VIPCounters is the [vip-counters] section.
	VIPCounters VIPCounters
	// ImportToKernel: write the best BGP paths learned from peers into a
	// kernel table (nodes without FRR; with FRR, zebra does it).
	ImportToKernel ImportToKernel
	// ControlPlane is the [control-plane] section (nil: none). Its VIP's
	// pool is among Pools (named ControlPlanePool).
	ControlPlane *ControlPlane
}

// VIPCounters is the [vip-counters] section.
type VIPCounters struct {
	// Fallback counts VIP traffic where the XDP fast path is off or
	// refused (default nftables).
	Fallback CountersFallback
}

// ImportToKernel is the [import-to-kernel] section.
type ImportToKernel struct {
	Enabled bool
	// Table is the kernel routing table (default 254, main).
	Table int
}

// Interface is where the VIPs live.
type Interface struct {
	Name string
	Kind InterfaceKind
}

// Pool is one [[pools]] entry.
type Pool struct {
	Name string
	// Prefixes and Ranges are the pool's addresses as written (a single
	// address is a Range with First == Last). They do not overlap.
	Prefixes []netip.Prefix
	Ranges   []Range
	Mode     routing.Mode // bgp (default) or layer2
	// AutoAssign: the allocator may pick from this pool for Services that
	// name no pool. Default true.
	AutoAssign bool
	// AvoidBuggyIPs: IPv4 addresses ending in .0 or .255 are not used.
	AvoidBuggyIPs bool
	// Namespaces that may use the pool (with NamespaceSelector: either
	// grants it); both empty means all.
	Namespaces []string
	// NamespaceSelector is a label selector (as written) on the Namespace
	// objects: Services of a matching namespace may use the pool.
	NamespaceSelector string
	// ServiceSelector is a label selector (as written) a Service must match
	// to get addresses from the pool; empty: every Service.
	ServiceSelector string
	// Priority orders the auto-assign pools a Service may use: lower
	// first, then pools without one (0), in file order.
	Priority  int
	Layer2    PoolLayer2
	Advertise PoolAdvertise
}

// PoolLayer2 is a pool's [pools.layer2] section.
type PoolLayer2 struct {
	// Interfaces where ARP/NDP is answered for the pool's VIPs.
	Interfaces []string
}

// Layer2 is the [layer2] section.
type Layer2 struct {
	GratuitousCount    int
	GratuitousInterval time.Duration
	FastPath           FastPath
	// PinDir is a directory on a bpf filesystem under which the XDP fast
	// path pins its program and maps (one sub-directory per node name), so
	// they outlive an agent restart. Empty: /sys/fs/bpf/vipspeaker.
	PinDir string
}

// Membership is the [membership] section.
type Membership struct {
	// Join are "host" or "host:port" of other speakers (standalone mode).
	Join []string
	// SecretFile holds the memberlist encryption key; empty: no encryption.
	// It is the text of secret-file as written, also when that is a
	// secret:NAME/KEY reference (then SecretRef is set too).
	SecretFile string
	// SecretRef is set when secret-file is secret:NAME/KEY: a key of a
	// Secret in the agent's namespace, read through the API server in
	// cluster mode. Standalone mode cannot resolve it.
	SecretRef SecretRef
}

// PeerNodes restricts gobgp.conf neighbors to the nodes a label selector
// matches.
type PeerNodes struct {
	Neighbors []netip.Addr
	// NodeSelector is a Kubernetes label selector, already checked to parse.
	NodeSelector string
}

// Default is the configuration used when there is no vipspeaker.toml.
func Default() *Config {
	return &Config{
		Interface:      Interface{Name: DefaultInterfaceName, Kind: DefaultInterfaceKind},
		ImportToKernel: ImportToKernel{Table: 254},
		VIPCounters:    VIPCounters{Fallback: CountersNFTables},
		Layer2: Layer2{
			GratuitousCount:    DefaultGratuitousCount,
			GratuitousInterval: DefaultGratuitousInterval,
			FastPath:           DefaultFastPath,
		},
	}
}

// Error is one problem of a config file.
type Error struct {
	File  string
	Line  int    // 1-based; 0 when unknown
	Field string // e.g. "pools[1].addresses[0]"; may be empty
	Msg   string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Field == "" {
		return loc + ": " + e.Msg
	}
	return loc + ": " + e.Field + ": " + e.Msg
}

// LoadDir reads FileName from dir and checks it against the gobgp.conf
// beside it (CheckWithGoBGP). A missing file yields Default() and no
// error. On any error the returned Config is nil.
func LoadDir(dir string) (*Config, []error) {
	file := filepath.Join(dir, FileName)
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return Default(), nil
	}
	if err != nil {
		return nil, []error{&Error{File: file, Msg: fmt.Sprintf("read: %v", unwrapPath(err))}}
	}
	c, errs := Parse(file, data)
	if len(errs) > 0 {
		return nil, errs
	}
	if errs := checkDirGoBGP(dir, file, data, c); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse decodes and validates vipspeaker.toml read from file. It returns
// either a complete Config and no errors, or nil and every problem found,
// sorted by line.
func Parse(file string, data []byte) (*Config, []error) {
	var raw fileConfig
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&raw)
	var errs []error
	pos := indexPositions(data)
	if err != nil {
		var strictErr *toml.StrictMissingError
		var decErr *toml.DecodeError
		switch {
		case errors.As(err, &strictErr):
			for _, de := range strictErr.Errors {
				line, _ := de.Position()
				errs = append(errs, &Error{File: file, Line: line, Field: pos.pathAt(line, de.Key()), Msg: "unknown key"})
			}
		case errors.As(err, &decErr):
			// Syntax or type error: the document cannot be trusted further.
			line, _ := decErr.Position()
			return nil, []error{&Error{File: file, Line: line, Field: keyString(decErr.Key()), Msg: decodeMsg(decErr)}}
		default:
			return nil, []error{&Error{File: file, Msg: err.Error()}}
		}
	}
	v := validator{file: file, pos: pos}
	cfg := v.build(&raw)
	errs = append(errs, v.errs...)
	if len(errs) > 0 {
		sortErrors(errs)
		return nil, errs
	}
	return cfg, nil
}

func keyString(k toml.Key) string {
	s := ""
	for _, p := range k {
		s = join(s, p)
	}
	return s
}

var typeErrRE = regexp.MustCompile(`^cannot decode TOML (\w+) into .* of type (.+)$`)

// decodeMsg says what go-toml found in words of the file, not of our Go
// types.
func decodeMsg(e *toml.DecodeError) string {
	msg := strings.TrimPrefix(e.Error(), "toml: ")
	if m := typeErrRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("expected %s, found %s", tomlWord(m[2]), article(strings.ToLower(m[1])))
	}
	return msg
}

func tomlWord(goType string) string {
	goType = strings.TrimPrefix(goType, "*")
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean (true or false)"
	case strings.HasPrefix(goType, "int"):
		return "an integer"
	case goType == "[]string":
		return "an array of strings"
	case strings.HasPrefix(goType, "[]"):
		return "an array of tables"
	default:
		return "a table"
	}
}

func article(w string) string {
	if w != "" && strings.ContainsRune("aeiou", rune(w[0])) {
		return "an " + w
	}
	return "a " + w
}

func sortErrors(errs []error) {
	slices.SortStableFunc(errs, func(a, b error) int {
		var ea, eb *Error
		if !errors.As(a, &ea) || !errors.As(b, &eb) {
			return 0
		}
		return cmp.Or(cmp.Compare(ea.Line, eb.Line), cmp.Compare(ea.Field, eb.Field))
	})
}
