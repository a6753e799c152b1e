package standalone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/vipspeaker/vipspeaker/internal/heartbeat"
	"github.com/vipspeaker/vipspeaker/routing"
)

// Options configure a Source. The zero value of each field means its
// default.
type Options struct {
	// Dir holds the Service manifests. Required.
	Dir string
	// Heartbeat, when set, beats from Run's loops (/healthz).
	Heartbeat *heartbeat.Beat
	// Logger receives skips (info/debug) and keep-last-good warnings; Run
	// also logs every Error. Default: discard.
	Logger *slog.Logger
	// Debounce is how long Run waits for the directory to be quiet before
	// it reloads. Default 100ms.
	Debounce time.Duration
	// PollInterval is how often Run looks for a directory that does not
	// exist (yet). Default 1s.
	PollInterval time.Duration
}

// Source reads a directory of Service manifests. It keeps the last good
// state of every file and Service between Loads (see the package
// documentation). Safe for concurrent use.
type Source struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	files    map[string]map[string]*wanted // file -> service -> wanted, at its last clean read
	lastGood map[string]*wanted            // service -> its last fully valid state
	last     []routing.VIP                 // result of the last Load
	// partial: the last Load met a problem that memory could not cover (a
	// file or Service broken since before this Source first read it), so
	// its result may lack VIPs that are wanted.
	partial bool
}

// Partial reports whether the last Load met bad input that no earlier good
// read covers — typically a file already broken when the agent started. The
// caller should then not remove VIPs it cannot account for.
func (s *Source) Partial() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.partial
}

// New checks the options; it starts nothing.
func New(opts Options) (*Source, error) {
	if opts.Dir == "" {
		return nil, errors.New("standalone: no services directory")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	return &Source{
		opts:     opts,
		log:      opts.Logger.With("component", "standalone"),
		files:    map[string]map[string]*wanted{},
		lastGood: map[string]*wanted{},
	}, nil
}

// ErrNoDir is wrapped by the error Load returns when the directory does not
// exist.
var ErrNoDir = errors.New("services directory does not exist")

// Load reads the directory once and returns the desired VIPs, sorted by
// address, and every problem found (as *Error). Problems never remove a VIP
// that was good at an earlier Load of this Source. When the directory
// cannot be read at all, the previous result is returned with the error.
func (s *Source) Load() ([]routing.VIP, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		e := &Error{File: s.opts.Dir, Msg: fmt.Sprintf("read directory: %v", pathErr(err))}
		if errors.Is(err, fs.ErrNotExist) {
			e.Msg = ErrNoDir.Error()
		}
		return slices.Clone(s.last), []error{e}
	}

	var errs []error
	report := func(e *Error) { errs = append(errs, e) }
	s.partial = false

	services := map[string]*wanted{} // this Load's result per Service
	origins := map[string]string{}   // Service -> file it was taken from
	newFiles := map[string]map[string]*wanted{}
	newGood := map[string]*wanted{}

	for _, ent := range entries {
		name := ent.Name()
		if strings.HasPrefix(name, ".") || !manifestExt(name) {
			continue
		}
		path := filepath.Join(s.opts.Dir, name)
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			continue
		}
		fresh, clean := s.readFile(path, report, newGood)
		got := fresh
		if clean {
			newFiles[name] = fresh
		} else if prev, ok := s.files[name]; !ok {
			s.partial = true
		} else {
			// Keep what the file held at its last clean read.
			newFiles[name] = prev
			got = maps.Clone(fresh)
			for key, w := range prev {
				if _, ok := got[key]; !ok {
					got[key] = w
					s.log.Warn("file has errors: keeping service from its last good read",
						"file", path, "service", key)
					if g, ok := s.lastGood[key]; ok {
						newGood[key] = g
					}
				}
			}
		}
		keys := make([]string, 0, len(got))
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, key := range keys {
			if other, dup := origins[key]; dup {
				report(&Error{File: path, Service: key,
					Msg: fmt.Sprintf("service is also defined in %s; that one is used", other)})
				continue
			}
			origins[key] = path
			services[key] = got[key]
		}
	}

	vips, conflicts := merge(services)
	for _, c := range conflicts {
		report(&Error{File: origins[c.second], Service: c.second, Field: annotationField(AnnotationMode), Msg: c.msg})
	}

	s.files = newFiles
	// Forget last-good state of Services that are gone.
	s.lastGood = map[string]*wanted{}
	for key := range services {
		if g, ok := newGood[key]; ok {
			s.lastGood[key] = g
		}
	}
	s.last = vips
	return slices.Clone(vips), errs
}

func manifestExt(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readFile reads one file. It returns the Services it wants and whether
// every document could be decoded (a clean read). Fully valid Services are
// recorded in newGood; invalid ones fall back to s.lastGood.
func (s *Source) readFile(path string, report func(*Error), newGood map[string]*wanted) (map[string]*wanted, bool) {
	out := map[string]*wanted{}
	data, err := os.ReadFile(path)
	if err != nil {
		report(&Error{File: path, Msg: fmt.Sprintf("read: %v", pathErr(err))})
		return out, false
	}
	clean := true
	for _, doc := range splitDocuments(data) {
		if !s.readDocument(path, doc, out, report, newGood) {
			clean = false
		}
	}
	return out, clean
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type list struct {
	Items []jsonRaw `json:"items"`
}

// jsonRaw keeps an item of a List undecoded.
type jsonRaw []byte

func (r *jsonRaw) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

// readDocument decodes one document (a Service, a List of them, or
// something to skip). It returns false when the document is malformed.
func (s *Source) readDocument(path string, doc document, out map[string]*wanted, report func(*Error), newGood map[string]*wanted) bool {
	docErr := func(field, msg string, line int) *Error {
		if line == 0 {
			line = doc.startLine
		}
		return &Error{File: path, Doc: doc.index, DocLine: doc.startLine, Line: line, Field: field, Msg: msg}
	}
	js, err := yaml.YAMLToJSON(doc.data)
	if err != nil {
		msg, line := doc.fileLine(err.Error())
		report(docErr("", "malformed YAML: "+msg, line))
		return false
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return true
	}
	var tm typeMeta
	if err := yaml.Unmarshal(js, &tm); err != nil {
		report(docErr("", "not a Kubernetes object (expected a mapping with apiVersion and kind)", 0))
		return false
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		report(docErr("", "not a Kubernetes object: apiVersion or kind is missing", 0))
		return false
	}
	if tm.APIVersion == "v1" && tm.Kind == "List" {
		var l list
		if err := yaml.Unmarshal(js, &l); err != nil {
			report(docErr("items", "malformed List: "+jsonErr(err), 0))
			return false
		}
		ok := true
		for i, item := range l.Items {
			if !s.readObject(path, doc, fmt.Sprintf("items[%d].", i), item, out, report, newGood) {
				ok = false
			}
		}
		return ok
	}
	return s.readObject(path, doc, "", js, out, report, newGood)
}

func (s *Source) readObject(path string, doc document, prefix string, js []byte, out map[string]*wanted, report func(*Error), newGood map[string]*wanted) bool {
	mk := func(service, field, needle, msg string) *Error {
		return &Error{File: path, Doc: doc.index, DocLine: doc.startLine, Line: doc.lineOf(needle),
			Service: service, Field: prefix + field, Msg: msg}
	}
	var tm typeMeta
	if err := yaml.Unmarshal(js, &tm); err != nil {
		report(mk("", "", "", "not a Kubernetes object (expected a mapping with apiVersion and kind)"))
		return false
	}
	if tm.APIVersion != "v1" || tm.Kind != "Service" {
		s.log.Debug("skipping document: not a v1 Service", "file", path, "document", doc.index,
			"apiVersion", tm.APIVersion, "kind", tm.Kind)
		return true
	}
	var svc corev1.Service
	if err := yaml.Unmarshal(js, &svc); err != nil {
		report(mk("", "", "", "malformed Service: "+jsonErr(err)))
		return false
	}
	if svc.Name == "" {
		report(mk("", "metadata.name", "", "a Service needs a name"))
		return false
	}
	key := serviceKey(&svc)
	log := s.log.With("file", path, "document", doc.index, "service", key)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		log.Info("skipping service: spec.type is not LoadBalancer", "type", string(svc.Spec.Type))
		return true
	}
	if c := svc.Spec.LoadBalancerClass; c != nil && *c != LoadBalancerClass {
		log.Info("skipping service: its loadBalancerClass is not "+LoadBalancerClass, "class", *c)
		return true
	}
	if _, dup := out[key]; dup {
		report(mk(key, "metadata.name", "", "service is defined twice in this file; the first is used"))
		return true
	}
	ev := evaluate(&svc, func(field, needle, msg string) *Error { return mk(key, field, needle, msg) })
	for _, e := range ev.errs {
		report(e)
	}
	switch {
	case len(ev.errs) == 0:
		w := ev.w
		newGood[key] = &w
		out[key] = &w
	case s.lastGood[key] != nil:
		g := s.lastGood[key]
		newGood[key] = g
		out[key] = g
		log.Warn("service has invalid fields: keeping its last good VIPs", "vips", addrList(g.addrs))
	case ev.attrsBad:
		s.partial = true
		log.Warn("service has an invalid mode or community: not applied")
	default:
		w := ev.w
		out[key] = &w
	}
	if w := out[key]; w != nil && len(w.addrs) == 0 {
		log.Info("service has no address (no annotation, no loadBalancerIP, no ingress IP)")
	}
	return true
}

func addrList(as []netip.Addr) string {
	var b []string
	for _, a := range as {
		b = append(b, a.String())
	}
	return strings.Join(b, ",")
}

type conflict struct {
	second string
	msg    string
}

// merge turns per-Service wants into VIPs, one per address, sorted.
func merge(services map[string]*wanted) ([]routing.VIP, []conflict) {
	keys := make([]string, 0, len(services))
	for k := range services {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type acc struct {
		services    []string
		mode        routing.Mode
		modeFrom    string
		comms, larg [][]string
	}
	byAddr := map[netip.Addr]*acc{}
	var conflicts []conflict
	for _, key := range keys {
		w := services[key]
		for _, a := range w.addrs {
			x := byAddr[a]
			if x == nil {
				x = &acc{mode: w.mode, modeFrom: key}
				byAddr[a] = x
			} else if x.mode != w.mode {
				conflicts = append(conflicts, conflict{second: key, msg: fmt.Sprintf(
					"shares %s with %s but asks for mode %q, not %q; %s's mode is used",
					a, x.modeFrom, modeName(w.mode), modeName(x.mode), x.modeFrom)})
			}
			x.services = append(x.services, key)
			x.comms = append(x.comms, w.communities)
			x.larg = append(x.larg, w.large)
		}
	}
	vips := make([]routing.VIP, 0, len(byAddr))
	for a, x := range byAddr {
		vips = append(vips, routing.VIP{Addr: a, Attrs: routing.Attrs{
			Service:          strings.Join(x.services, ","),
			Mode:             x.mode,
			Communities:      routing.MergeCommunities(x.comms...),
			LargeCommunities: routing.MergeCommunities(x.larg...),
		}})
	}
	slices.SortFunc(vips, func(a, b routing.VIP) int { return a.Addr.Compare(b.Addr) })
	return vips, conflicts
}

func modeName(m routing.Mode) string {
	if m == "" {
		return "default"
	}
	return string(m)
}

// Run loads the directory, calls apply with the result, then watches the
// directory and calls apply again after every change that alters the
// result (debounced). A directory that does not exist yet is polled for;
// until it exists nothing is applied. Run returns nil when ctx ends, or an
// error when watching is impossible.
func (s *Source) Run(ctx context.Context, apply func([]routing.VIP)) error {
	r := runner{s: s, apply: apply}
	for first := true; ; first = false {
		if !s.waitForDir(ctx) {
			return nil
		}
		if !first {
			// A directory that came back may still be filling up: let it
			// settle for one debounce period before reading it.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(s.opts.Debounce):
			}
		}
		err := r.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		s.log.Warn("services directory is gone; keeping the VIPs, waiting for it to come back", "dir", s.opts.Dir)
	}
}

func (s *Source) waitForDir(ctx context.Context) bool {
	logged := false
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	for {
		s.opts.Heartbeat.Beat()
		if fi, err := os.Stat(s.opts.Dir); err == nil && fi.IsDir() {
			return true
		}
		if !logged {
			s.log.Warn("services directory does not exist yet; polling for it", "dir", s.opts.Dir)
			logged = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

type runner struct {
	s       *Source
	apply   func([]routing.VIP)
	applied bool
	last    []routing.VIP
}

// reload loads and applies when the result changed. It reports false when
// the directory is gone.
func (r *runner) reload() bool {
	vips, errs := r.s.Load()
	gone := false
	for _, err := range errs {
		var e *Error
		if errors.As(err, &e) && e.File == r.s.opts.Dir && e.Msg == ErrNoDir.Error() {
			gone = true
			continue
		}
		r.s.log.Warn("bad input skipped", "error", err)
	}
	if gone {
		return false
	}
	if r.applied && slices.EqualFunc(vips, r.last, func(a, b routing.VIP) bool {
		return a.Addr == b.Addr && a.Attrs.Equal(b.Attrs)
	}) {
		return true
	}
	r.s.log.Info("applying services", "vips", len(vips))
	r.apply(vips)
	r.applied, r.last = true, vips
	return true
}

// watch runs until the directory disappears (nil) or ctx ends.
func (r *runner) watch(ctx context.Context) error {
	s := r.s
	w, err := newWatcher(s.opts.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("watch %s: %w", s.opts.Dir, err)
	}
	defer w.Close()
	// The watch is in place before the first read: no change is missed.
	if !r.reload() {
		return nil
	}
	var (
		timer    *time.Timer
		timerC   <-chan time.Time
		deadline time.Time
	)
	maxWait := 10 * s.opts.Debounce
	schedule := func() {
		now := time.Now()
		if timer == nil {
			deadline = now.Add(maxWait)
			timer = time.NewTimer(s.opts.Debounce)
			timerC = timer.C
			return
		}
		d := min(s.opts.Debounce, time.Until(deadline))
		timer.Reset(max(d, 0))
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	beat, stopBeat := s.opts.Heartbeat.Tick()
	defer stopBeat()
	for {
		s.opts.Heartbeat.Beat()
		select {
		case <-ctx.Done():
			return nil
		case <-beat:
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watcher closed")
			}
			s.log.Debug("directory changed", "event", ev.String())
			if filepath.Clean(ev.Name) == filepath.Clean(s.opts.Dir) {
				// The directory itself was removed or moved away: wait for
				// it again (Run), withdrawing nothing.
				return nil
			}
			schedule()
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watcher closed")
			}
			s.log.Warn("watching services directory", "error", err)
			schedule()
		case <-timerC:
			timer, timerC = nil, nil
			if !r.reload() {
				return nil
			}
		}
	}
}

// jsonErr drops the wrapping sigs.k8s.io/yaml puts around decoding errors.
func jsonErr(err error) string {
	msg := err.Error()
	for _, p := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}
