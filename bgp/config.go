package bgp

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/osrg/gobgp/v4/pkg/config/oc"
	"github.com/pelletier/go-toml/v2"
)

// ConfigError is one problem of a config file, at a line.
type ConfigError struct {
	File string
	Line int
	Msg  string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// parsedConfig is a parsed and fully validated gobgp.conf.
type parsedConfig struct {
	File string
	set  *oc.BgpConfigSet
	// passwordFiles maps a neighbor address (or peer-group name) to the file
	// its auth-password was read from, for log messages.
	passwordFiles map[string]string
	pos           *positions
	// filled by the server before the config runs
	routerIDChosen bool
	nh6            netip.Addr
	// poolLinkLocal: the routers' addresses of the unnumbered neighbors
	// the pool-peers policy was built with, by interface (poolpeers.go)
	poolLinkLocal map[string]netip.Addr
}

// Validate checks a gobgp.conf (its name is used in the messages) exactly as
// Server.Apply does before it touches anything, and returns every problem
// found as a *ConfigError ("file:line: problem"). Nil means valid.
//
// An auth-password of the form secret:NAME/KEY is checked for its form only:
// offline no Secret can be read (the agent in cluster mode reads it).
func Validate(file string, data []byte) []error {
	data, errs := ResolvePasswordRefs(file, data, func(string, string) (string, error) { return "secret-not-read-offline", nil })
	if len(errs) > 0 {
		return errs
	}
	_, errs = parseConfig(file, data)
	return errs
}

// defaultDeferral is the graceful-restart deferral-time (seconds) used when
// gobgp.conf does not set one.
const defaultDeferral = 10

// emptyRouterID matches `router-id = ""` (only [global.config] has the key).
var emptyRouterID = regexp.MustCompile(`(?m)^([ \t]*)router-id[ \t]*=[ \t]*(""|'')[ \t]*(#.*)?$`)

// blankEmptyRouterID turns an explicitly empty router-id into a comment, so
// it means what leaving it out means (the node's own address) — GoBGP's
// reader would refuse the empty string. Lines keep their numbers.
func blankEmptyRouterID(data []byte) []byte {
	return emptyRouterID.ReplaceAll(data, []byte("${1}# router-id empty: the node's own address"))
}

// viperMu serialises GoBGP's config reader: it keeps a package-level map of
// peer-group member fields.
var viperMu sync.Mutex

type validator struct {
	file string
	pos  *positions
	errs []error
}

func (v *validator) add(line int, format string, args ...any) {
	v.errs = append(v.errs, &ConfigError{File: v.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) at(path ...string) int { return v.pos.line(path...) }

func idx(i int) string { return strconv.Itoa(i) }

// parseConfig reads and validates data. Either the config or errors is
// returned, never both.
func parseConfig(file string, data []byte) (*parsedConfig, []error) {
	v := &validator{file: file}
	data = blankEmptyRouterID(data)

	// 1. syntax, with the decoder's own position
	var raw map[string]any
	if err := toml.Unmarshal(data, &raw); err != nil {
		var de *toml.DecodeError
		line := 1
		if errors.As(err, &de) {
			line, _ = de.Position()
		}
		v.add(line, "invalid TOML: %s", tomlMessage(err))
		return nil, v.errs
	}
	v.pos = indexPositions(data)

	// 2. every key must be one gobgpd knows
	checkKeys(v, reflect.TypeFor[oc.BgpConfigSet](), raw, nil)
	if len(v.errs) > 0 {
		return nil, v.errs
	}

	// 3. references first: GoBGP's reader stops quietly at an unknown
	// peer group
	checkReferences(v, raw)
	if len(v.errs) > 0 {
		return nil, v.errs
	}

	// 4. GoBGP's own reader (types, addresses, defaults), with no
	// neighbor-interface for it to look up on this host
	data, unnumbered := standInUnnumbered(v, data, raw)
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	viperMu.Lock()
	set, err := oc.ReadConfig(bytes.NewReader(data), "toml")
	viperMu.Unlock()
	if err != nil {
		readerErrors(v, err)
		return nil, v.errs
	}
	restoreUnnumbered(set, raw, unnumbered)

	// GoBGP fills the default global families from a map: put them in a
	// stable order so two reads of one file compare equal
	sort.Slice(set.Global.AfiSafis, func(i, j int) bool {
		return set.Global.AfiSafis[i].Config.AfiSafiName < set.Global.AfiSafis[j].Config.AfiSafiName
	})

	// A speaker that only originates routes has nothing to wait for after
	// a restart but its peers' End-of-RIB; GoBGP's default deferral of
	// 360 s would hold our routes back that long from every peer whenever
	// one graceful-restart peer is down. Unless the file says otherwise,
	// wait at most defaultDeferral.
	for i := range set.Neighbors {
		n := &set.Neighbors[i]
		if n.GracefulRestart.Config.Enabled && !v.pos.has("neighbors", idx(i), "graceful-restart", "config", "deferral-time") {
			n.GracefulRestart.Config.DeferralTime = defaultDeferral
		}
	}

	// 5. what the reader accepts but a running speaker must not
	cfg := &parsedConfig{File: file, set: set, passwordFiles: map[string]string{}, pos: v.pos}
	checkSemantics(v, cfg)
	if len(v.errs) > 0 {
		return nil, v.errs
	}

	// 6. policies as GoBGP's policy engine sees them
	checkPolicies(v, set)
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return cfg, nil
}

func tomlMessage(err error) string {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		return de.Error()
	}
	return err.Error()
}

// checkKeys walks the decoded document beside GoBGP's config types and
// reports keys that have no field (gobgpd's reader rejects them too, but
// without a line).
func checkKeys(v *validator, t reflect.Type, val any, path []string) {
	switch t.Kind() {
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			if t == reflect.TypeFor[netip.Addr]() || t == reflect.TypeFor[netip.Prefix]() {
				return
			}
			v.add(v.at(path...), "%s: want a table", strings.Join(path, "."))
			return
		}
		fields := make(map[string]reflect.StructField, t.NumField())
		for i := range t.NumField() {
			f := t.Field(i)
			if tag := f.Tag.Get("mapstructure"); tag != "" {
				fields[strings.ToLower(tag)] = f
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := append(append([]string{}, path...), k)
			f, ok := fields[strings.ToLower(k)]
			if !ok {
				where := "top level"
				if len(path) > 0 {
					where = "[" + strings.Join(path, ".") + "]"
				}
				v.add(v.at(p...), "unknown key %q in %s", k, where)
				continue
			}
			checkKeys(v, f.Type, m[k], p)
		}
	case reflect.Slice:
		if t.Elem().Kind() != reflect.Struct {
			return
		}
		var list []any
		switch l := val.(type) {
		case []any:
			list = l
		case []map[string]any:
			for _, e := range l {
				list = append(list, e)
			}
		default:
			v.add(v.at(path...), "%s: want an array of tables", strings.Join(path, "."))
			return
		}
		for i, e := range list {
			checkKeys(v, t.Elem(), e, append(append([]string{}, path...), idx(i)))
		}
	}
}

// GoBGP's reader (viper + mapstructure) names the failing field as
// 'neighbors[0].config.neighbor-address'.
var fieldRE = regexp.MustCompile(`'([a-z0-9\-\[\]\.]+)'`)

func readerErrors(v *validator, err error) {
	msg := err.Error()
	found := false
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "*"))
		m := fieldRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		found = true
		v.add(v.pos.lineDotted(m[1]), "%s", strings.TrimSpace(l))
	}
	if !found {
		v.add(1, "%s", msg)
	}
}

func asMap(x any) map[string]any {
	m, _ := x.(map[string]any)
	return m
}

func asList(x any) []map[string]any {
	switch l := x.(type) {
	case []any:
		out := make([]map[string]any, 0, len(l))
		for _, e := range l {
			out = append(out, asMap(e))
		}
		return out
	case []map[string]any:
		return l
	}
	return nil
}

func getPath(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm := asMap(cur)
		if mm == nil {
			return nil
		}
		var next any
		for kk, vv := range mm {
			if strings.EqualFold(kk, k) {
				next = vv
			}
		}
		cur = next
	}
	return cur
}

func getString(m map[string]any, keys ...string) string {
	s, _ := getPath(m, keys...).(string)
	return s
}

func getStrings(m map[string]any, keys ...string) []string {
	var out []string
	if l, ok := getPath(m, keys...).([]any); ok {
		for _, e := range l {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}
