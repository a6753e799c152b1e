package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/internal/heartbeat"
	"github.com/vipspeaker/vipspeaker/kube/nodestate"
	"github.com/vipspeaker/vipspeaker/routing"
)

// Defaults of Options.
const (
	DefaultNamespace     = "vipspeaker-system"
	DefaultConfigMapName = "vipspeaker-config"
	DefaultLeaseName     = "vipspeaker-allocator"
	// GoBGPConfKey is the ConfigMap key holding gobgp.conf.
	GoBGPConfKey = "gobgp.conf"
)

// Options configure a Controller. The zero value of each field means its
// default.
type Options struct {
	// Kubeconfig is a kubeconfig file; empty: the in-cluster config.
	Kubeconfig string
	// RESTConfig, when set, is used instead of Kubeconfig.
	RESTConfig *rest.Config
	// NodeName is this node's Node name. Required.
	NodeName string
	// Namespace holds the ConfigMap and the Lease (default
	// vipspeaker-system).
	Namespace string
	// ConfigMapName (default vipspeaker-config) and LeaseName (default
	// vipspeaker-allocator).
	ConfigMapName string
	LeaseName     string
	// Lease timing (defaults 15s, 10s, 2s).
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// NoAllocator: never run the allocator (speaker only).
	NoAllocator bool
	// Heartbeat, when set, beats from the speaker's loop (/healthz).
	Heartbeat *heartbeat.Beat
	// AllocatorOnly: run only the allocator (vipspeaker allocate): no
	// speaker, so no Nodes or EndpointSlices are watched, and apply is
	// never called. NodeName is then the allocator's identity in the
	// Lease (the Pod's name).
	AllocatorOnly bool
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
	// OnConfig receives the ConfigMap's vipspeaker.toml and gobgp.conf
	// (nil when a key is absent) after vipspeaker.toml passed validation,
	// and once at start (both nil when there is no ConfigMap). An error
	// rejects the whole ConfigMap: the last good configuration stays.
	OnConfig func(vipspeakerTOML, gobgpConf []byte) error
	// OnConfigRejected is told about every rejected ConfigMap (optional).
	OnConfigRejected func(error)
	// OnLayer2 receives, on every change, the candidate nodes (sorted) of
	// each layer2 VIP: the input of the layer2 owner election (optional).
	OnLayer2 func(map[netip.Addr][]string)
	// OnNodeAddrs receives every Node's InternalIP addresses (Node name to
	// addresses) after the caches synced and whenever they change: the
	// layer2 membership joins the other speakers through them (optional).
	OnNodeAddrs func(map[string][]string)
	// OnHandover receives, after the caches synced and whenever they
	// change, the addresses of the node this node hands the connections
	// of a drain to (HandoverTargets; nil: none).
	OnHandover func([]netip.Addr)
	// OnNodeLabels receives this node's labels once its Node is read and
	// again whenever they change ([[peer-nodes]] selects on them).
	OnNodeLabels func(map[string]string)
	// NodeReport, when set, is this node's state for its VIPSpeakerNode
	// object (false: not ready to report); the speaker writes it.
	NodeReport func() (nodestate.Status, bool)

	client Clients // tests: a fake clientset
}

// Controller watches the API server: it allocates addresses while it holds
// the Lease, and computes this node's VIPs.
type Controller struct {
	opts    Options
	log     *slog.Logger
	cs      Clients
	dyn     dynamic.Interface // VIPSpeakerNode objects (nil with a fake clientset)
	metrics *metrics

	cfg    atomic.Pointer[config.Config]
	cfgGen atomic.Uint64
	cfgMu  sync.Mutex
	cfgRaw *[2]string // the ConfigMap data last processed (nil: none)
	cfgOK  bool       // a ConfigMap was accepted at least once

	services   corelisters.ServiceLister
	nodes      corelisters.NodeLister
	epsIndexer cache.Indexer
	cms        corelisters.ConfigMapLister
	queue      workqueue.TypedRateLimitingInterface[string]
	recorder   record.EventRecorder
	kickC      chan struct{}

	// watchdog checks the Lease renewals of the allocator (ElectionHealthy).
	watchdog  *leaderelection.HealthzAdaptor
	secrets   secrets
	conflicts conflicts
	resync    resync
	cond      conditions
	// pools this node may announce, from the speaker's last pass
	pools atomic.Pointer[[]string]
	// synced is set once the caches synced (services, nodes and recorder
	// usable from other goroutines).
	synced atomic.Bool
}

// New checks the options and builds the API client; it starts nothing.
func New(opts Options) (*Controller, error) {
	if opts.NodeName == "" {
		return nil, errors.New("kube: no node name")
	}
	if opts.AllocatorOnly && opts.NoAllocator {
		return nil, errors.New("kube: AllocatorOnly and NoAllocator exclude each other")
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.ConfigMapName == "" {
		opts.ConfigMapName = DefaultConfigMapName
	}
	if opts.LeaseName == "" {
		opts.LeaseName = DefaultLeaseName
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = 15 * time.Second
	}
	if opts.RenewDeadline <= 0 {
		opts.RenewDeadline = min(10*time.Second, opts.LeaseDuration*2/3)
	}
	if opts.RetryPeriod <= 0 {
		opts.RetryPeriod = min(2*time.Second, opts.RenewDeadline/2)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	rc := opts.RESTConfig
	if opts.client != nil {
		return newController(opts, opts.client), nil
	}
	if rc == nil {
		var err error
		if opts.Kubeconfig != "" {
			rc, err = clientcmd.BuildConfigFromFlags("", opts.Kubeconfig)
			if err != nil {
				return nil, fmt.Errorf("load kubeconfig %s: %w", opts.Kubeconfig, err)
			}
		} else {
			rc, err = rest.InClusterConfig()
			if err != nil {
				return nil, fmt.Errorf("in-cluster config (use --kubeconfig outside a cluster): %w", err)
			}
		}
	}
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = "vipspeaker/" + opts.NodeName
	}
	if rc.QPS == 0 {
		// The allocator makes two writes per Service and each agent one
		// Event (the allocator two): at 200/s client-go's own limiter
		// capped bulk creation near 50 Services/s. The API server's
		// priority and fairness still protects it.
		rc.QPS, rc.Burst = 600, 1200
	}
	cs, err := newClients(rc)
	if err != nil {
		return nil, err
	}
	c := newController(opts, cs)
	if c.dyn, err = dynamic.NewForConfig(rc); err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	return c, nil
}

func newController(opts Options, cs Clients) *Controller {
	return &Controller{
		opts:    opts,
		log:     opts.Logger.With("component", "kube"),
		cs:      cs,
		metrics: newMetrics(opts.Registerer),
		kickC:   make(chan struct{}, 1),
		secrets: secrets{changed: make(chan struct{}, 1)},
		resync:  resync{kick: make(chan struct{}, 1)},
		// 20 s past the Lease's end, as kube-controller-manager allows.
		watchdog: leaderelection.NewLeaderHealthzAdaptor(20 * time.Second),
	}
}

// Client is the controller's API client.
func (c *Controller) Client() Clients { return c.cs }

// Synced reports whether Run's caches have synced (and Run still runs).
func (c *Controller) Synced() bool { return c.synced.Load() }

// ElectionHealthy returns an error when this process holds the allocator
// Lease but has not renewed it for LeaseDuration plus 20 s: its allocator
// is wedged (client-go's leader-election health check). A process that
// does not hold the Lease is healthy.
func (c *Controller) ElectionHealthy() error { return c.watchdog.Check(nil) }

// Config returns the configuration in force (nil before the first one).
func (c *Controller) Config() *config.Config { return c.cfg.Load() }

const epsByService = "service"

// Run watches the API server until ctx ends. After the caches have synced
// it calls apply with this node's VIPs, and again whenever they change.
// When the API server becomes unreachable the caches keep their content, so
// nothing is withdrawn for that reason. While this agent holds the Lease it
// also allocates addresses (unless Options.NoAllocator).
// eventCacheSize bounds each of the event correlator's caches.
const eventCacheSize = 512

func (c *Controller) Run(ctx context.Context, apply func([]routing.VIP)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The event correlator keeps three LRU caches keyed per object; at
	// client-go's default of 4,096 entries each they hold a few MB after a
	// burst of Services. 512 still folds repeats of the same Event.
	bc := record.NewBroadcaster(record.WithContext(ctx), record.WithCorrelatorOptions(record.CorrelatorOptions{LRUCacheSize: eventCacheSize}))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.cs.CoreV1().Events("")})
	defer bc.Shutdown()
	c.recorder = bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "vipspeaker", Host: c.opts.NodeName})

	core := c.cs.CoreV1()
	svcInf := newInformer(c.cs, core.Services(""), &corev1.Service{}, "")
	nodeInf := newInformer(c.cs, core.Nodes(), &corev1.Node{}, "")
	epsInf := newInformer(c.cs, c.cs.DiscoveryV1().EndpointSlices(""), &discoveryv1.EndpointSlice{}, "")
	cmInf := newInformer(c.cs, core.ConfigMaps(c.opts.Namespace), &corev1.ConfigMap{}, "metadata.name="+c.opts.ConfigMapName)
	// The speaker also follows Nodes and EndpointSlices; the allocator
	// alone needs only Services and the ConfigMap.
	speaker := !c.opts.AllocatorOnly
	synced := []cache.InformerSynced{svcInf.HasSynced, cmInf.HasSynced}
	if speaker {
		if err := epsInf.AddIndexers(cache.Indexers{epsByService: func(obj any) ([]string, error) {
			s, ok := obj.(*discoveryv1.EndpointSlice)
			if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
				return nil, nil
			}
			return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
		}}); err != nil {
			return fmt.Errorf("endpointslice index: %w", err)
		}
		c.nodes, c.epsIndexer = corelisters.NewNodeLister(nodeInf.GetIndexer()), epsInf.GetIndexer()
		synced = append(synced, nodeInf.HasSynced, epsInf.HasSynced)
	}
	c.services, c.cms = corelisters.NewServiceLister(svcInf.GetIndexer()), corelisters.NewConfigMapLister(cmInf.GetIndexer())
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "vipspeaker-allocator"})
	defer c.queue.ShutDown()
	if !c.opts.NoAllocator {
		c.cond.queue = workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[string]{Name: "vipspeaker-conditions"})
		defer c.cond.queue.ShutDown()
	}
	var resyncWG sync.WaitGroup
	defer func() { cancel(); resyncWG.Wait() }()
	resyncWG.Go(func() { c.runResync(ctx) })

	cmSynced := false
	var syncMu sync.Mutex
	onSvc := func(obj any) {
		if svc, ok := obj.(*corev1.Service); ok {
			c.queue.Add(ServiceKey(svc))
			c.condAdd(ServiceKey(svc))
		} else if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			c.queue.Add(d.Key)
		}
		c.kick()
	}
	kickAll := func(any) { c.kick() }
	if _, err := svcInf.AddEventHandler(counted("services", cache.ResourceEventHandlerFuncs{
		AddFunc: onSvc, UpdateFunc: func(_, n any) { onSvc(n) }, DeleteFunc: onSvc,
	})); err != nil {
		return err
	}
	if speaker {
		for resource, inf := range map[string]cache.SharedIndexInformer{"nodes": nodeInf, "endpointslices": epsInf} {
			if _, err := inf.AddEventHandler(counted(resource, cache.ResourceEventHandlerFuncs{
				AddFunc: kickAll, UpdateFunc: func(_, n any) { kickAll(n) }, DeleteFunc: kickAll,
			})); err != nil {
				return err
			}
		}
	}
	onCM := func(obj any) {
		syncMu.Lock()
		ready := cmSynced
		syncMu.Unlock()
		if !ready {
			return // the first state is read after the sync
		}
		cm, _ := obj.(*corev1.ConfigMap)
		c.loadConfig(cm, false)
	}
	if _, err := cmInf.AddEventHandler(counted("configmaps", cache.ResourceEventHandlerFuncs{
		AddFunc: onCM, UpdateFunc: func(_, n any) { onCM(n) }, DeleteFunc: func(any) { onCM(nil) },
	})); err != nil {
		return err
	}

	infs := []cache.SharedIndexInformer{svcInf, cmInf}
	if speaker {
		infs = append(infs, nodeInf, epsInf)
	}
	defer runInformers(ctx, infs...)()
	c.log.Info("waiting for the API server's caches", "node", c.opts.NodeName)
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // ctx ended
	}
	syncMu.Lock()
	cmSynced = true
	syncMu.Unlock()
	c.secrets.mu.Lock()
	c.secrets.runCtx = ctx
	c.secrets.mu.Unlock()
	c.synced.Store(true)
	defer c.synced.Store(false)
	cm, err := c.cms.ConfigMaps(c.opts.Namespace).Get(c.opts.ConfigMapName)
	if err != nil {
		cm = nil
	}
	c.loadConfig(cm, true)
	c.log.Info("caches synced", "services", len(svcInf.GetStore().ListKeys()))

	var wg sync.WaitGroup
	wg.Go(func() { c.runSecrets(ctx) })
	if !c.opts.NoAllocator {
		wg.Go(func() { c.runElection(ctx) })
	}
	if speaker {
		wg.Go(func() { c.runNodeReport(ctx) })
		c.speak(ctx, apply)
	} else {
		<-ctx.Done()
	}
	cancel()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

func (c *Controller) kick() {
	select {
	case c.kickC <- struct{}{}:
	default:
	}
}

// loadConfig validates and adopts a ConfigMap's content; cm nil means there
// is none.
func (c *Controller) loadConfig(cm *corev1.ConfigMap, initial bool) {
	c.processConfig(cm, initial, false)
}

// reloadConfig runs the ConfigMap through OnConfig again although its text
// did not change (a Secret it names did).
func (c *Controller) reloadConfig(cm *corev1.ConfigMap) {
	c.processConfig(cm, false, true)
}

func (c *Controller) processConfig(cm *corev1.ConfigMap, initial, force bool) {
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	if cm == nil {
		if c.cfgOK || !initial {
			c.log.Warn("ConfigMap is gone: keeping the last good configuration",
				"configmap", c.opts.Namespace+"/"+c.opts.ConfigMapName)
			return
		}
		if c.opts.OnConfig != nil {
			if err := c.opts.OnConfig(nil, nil); err != nil {
				c.log.Error("configuration refused", "error", err)
			}
		}
		c.log.Warn("no ConfigMap: no pools until it is created", "configmap", c.opts.Namespace+"/"+c.opts.ConfigMapName)
		c.adopt(config.Default())
		return
	}
	tomlText, hasTOML := cm.Data[config.FileName]
	gobgpText, hasGoBGP := cm.Data[GoBGPConfKey]
	raw := [2]string{tomlText, gobgpText}
	if c.cfgRaw != nil && *c.cfgRaw == raw && !force {
		return
	}
	c.cfgRaw = &raw
	file := fmt.Sprintf("configmap %s/%s: %s", cm.Namespace, cm.Name, config.FileName)
	cfg := config.Default()
	var err error
	if hasTOML {
		var errs []error
		if cfg, errs = config.Parse(file, []byte(tomlText)); len(errs) > 0 {
			err = errors.Join(errs...)
		}
	}
	if err == nil && c.opts.OnConfig != nil {
		var t, g []byte
		if hasTOML {
			t = []byte(tomlText)
		}
		if hasGoBGP {
			g = []byte(gobgpText)
		}
		// The Secrets OnConfig reads are watched from now on; the others
		// no longer.
		c.beginSecretPass()
		err = c.opts.OnConfig(t, g)
		c.endSecretPass()
	}
	if err != nil {
		c.log.Error("ConfigMap refused: the last good configuration stays", "configmap", cm.Namespace+"/"+cm.Name, "error", err)
		c.recorder.Eventf(cm, corev1.EventTypeWarning, "InvalidConfig", "node %s refused this configuration; the last good one stays: %v", c.opts.NodeName, err)
		if c.opts.OnConfigRejected != nil {
			c.opts.OnConfigRejected(err)
		}
		return
	}
	c.cfgOK = true
	c.log.Info("configuration loaded", "configmap", cm.Namespace+"/"+cm.Name, "pools", len(cfg.Pools), "default_class", cfg.DefaultClass)
	c.adopt(cfg)
}

func (c *Controller) adopt(cfg *config.Config) {
	c.cfg.Store(cfg)
	c.cfgGen.Add(1)
	if c.services != nil {
		svcs, _ := c.services.List(everything)
		keys := make([]string, len(svcs))
		for i, s := range svcs {
			keys[i] = ServiceKey(s)
		}
		c.requeue(keys)
	}
	c.kick()
}

// speak recomputes this node's VIPs after every change and applies them
// when they differ from the last set.
func (c *Controller) speak(ctx context.Context, apply func([]routing.VIP)) {
	var (
		last       []routing.VIP
		applied    bool
		said       = c.seedTold(ctx)
		lastL2     map[netip.Addr][]string
		lastAddrs  map[string][]string
		lastHand   []netip.Addr
		handSaid   bool
		lastLabels map[string]string
		lastGood   = map[string]svcAttrs{}
		invalid    = map[string]bool{}
		noNode     bool
		weights    = weightHold{every: WeightHold}
	)
	c.kick()
	var (
		pause   time.Duration
		lastEnd time.Time
		busy    int // passes in a row that ended with changes waiting
	)
	beat, stopBeat := c.opts.Heartbeat.Tick()
	defer stopBeat()
	for {
		c.opts.Heartbeat.Beat()
		select {
		case <-ctx.Done():
			return
		case <-beat:
			continue
		case <-c.kickC:
		}
		// A pass looks at every Service. While changes keep coming (a
		// burst of thousands), rest three times as long as the last pass
		// took (at most 500 ms) after it, so the changes that come
		// meanwhile are taken together and the agent uses at most a
		// quarter of a core, leaving the rest to the API server and the
		// node. The rest starts only once two passes in a row found
		// changes waiting when they ended: the few events of one
		// Service (its EndpointSlice, the Service, its status a few ms
		// later) are taken at once, each, as is a change after a quiet
		// spell; passes under 1 ms never rest.
		if wait := pause - time.Since(lastEnd); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		passStart := time.Now()
		svcs, _ := c.services.List(everything)
		nodeList, _ := c.nodes.List(everything)
		nodes := make(map[string]*corev1.Node, len(nodeList))
		for _, n := range nodeList {
			nodes[n.Name] = n
		}
		if _, ok := nodes[c.opts.NodeName]; ok == noNode {
			noNode = !ok
			if noNode {
				c.log.Warn("this node has no Node object: announcing nothing", "node", c.opts.NodeName)
			}
		}
		if me := nodes[c.opts.NodeName]; me != nil && c.opts.OnNodeLabels != nil && (lastLabels == nil || !maps.Equal(me.Labels, lastLabels)) {
			lastLabels = maps.Clone(me.Labels)
			if lastLabels == nil {
				lastLabels = map[string]string{}
			}
			c.opts.OnNodeLabels(lastLabels)
		}
		if c.opts.OnNodeAddrs != nil {
			if addrs := nodeAddrs(nodeList); !maps.EqualFunc(addrs, lastAddrs, slices.Equal) || lastAddrs == nil {
				c.opts.OnNodeAddrs(addrs)
				lastAddrs = addrs
			}
		}
		if c.opts.OnHandover != nil {
			if t := HandoverTargets(nodes, c.opts.NodeName); !handSaid || !slices.Equal(t, lastHand) {
				c.opts.OnHandover(t)
				lastHand, handSaid = t, true
			}
		}
		// Forget attributes of Services that are gone.
		keys := make(map[string]*corev1.Service, len(svcs))
		for _, s := range svcs {
			keys[ServiceKey(s)] = s
		}
		for k := range lastGood {
			if keys[k] == nil {
				delete(lastGood, k)
			}
		}
		pools := eligiblePools(c.cfg.Load(), nodes[c.opts.NodeName])
		c.pools.Store(&pools)
		res := decide(announceInput{
			node: c.opts.NodeName, cfg: c.cfg.Load(), services: svcs, nodes: nodes,
			endpoints: c.servingEndpointNodes, lastGood: lastGood,
		})
		var retry time.Duration
		if res.vips, retry = weights.apply(res.vips, time.Now()); retry > 0 {
			time.AfterFunc(retry, c.kick)
		}
		for _, k := range res.invalid {
			if !invalid[k] {
				c.log.Warn("service has an invalid mode or community and no earlier good one: not announced", "service", k)
			}
		}
		invalid = map[string]bool{}
		for _, k := range res.invalid {
			invalid[k] = true
		}
		if !applied || !slices.EqualFunc(last, res.vips, func(a, b routing.VIP) bool {
			return a.Addr == b.Addr && a.Attrs.Equal(b.Attrs)
		}) {
			apply(res.vips)
			applied, last = true, res.vips
			c.metrics.apply.Inc()
			c.log.Debug("VIPs applied", "vips", len(res.vips))
		}
		// Events once per change: what this node said before (also before
		// a restart, see seedTold) is not said again.
		for k, a := range res.services {
			s := keys[k]
			if s == nil {
				continue
			}
			t, ok := said[k]
			if ok && t.uid == s.UID && t.hasA && t.a.equal(a) {
				continue
			}
			verb := verbAnnounces
			if a.mode == routing.ModeLayer2 {
				verb = verbCandidate
			}
			desc := verb + " " + a.String()
			if ok && t.uid == s.UID && t.desc == desc {
				t.a, t.hasA = a, true
				said[k] = t
				continue
			}
			c.recorder.Eventf(s, corev1.EventTypeNormal, "Announcing", "node %s %s", c.opts.NodeName, desc)
			said[k] = told{uid: s.UID, desc: desc, what: a.String(), a: a, hasA: true}
		}
		for k, t := range said {
			if _, ok := res.services[k]; ok {
				continue
			}
			if s := keys[k]; s != nil && s.UID == t.uid {
				c.recorder.Eventf(s, corev1.EventTypeNormal, "Withdrawn", "node %s withdrew %s", c.opts.NodeName, t.what)
			}
			delete(said, k)
		}
		c.metrics.announced.Set(float64(len(res.services)))
		pause = 0
		if len(c.kickC) > 0 {
			busy++
		} else {
			busy = 0
		}
		if d := time.Since(passStart); d > time.Millisecond && busy >= 2 {
			pause = min(3*d, 500*time.Millisecond)
		}
		lastEnd = time.Now()
		if c.opts.OnLayer2 != nil && !mapsEqual(lastL2, res.layer2) {
			c.opts.OnLayer2(res.layer2)
			lastL2 = res.layer2
		}
	}
}

func mapsEqual(a, b map[netip.Addr][]string) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

func (c *Controller) servingEndpointNodes(namespace, name string) map[string]int {
	objs, _ := c.epsIndexer.ByIndex(epsByService, namespace+"/"+name)
	var ss []*discoveryv1.EndpointSlice
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			ss = append(ss, s)
		}
	}
	return ServingEndpointNodes(ss)
}
