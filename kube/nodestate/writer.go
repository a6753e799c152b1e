package nodestate

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// WriterOptions configure a Writer. Zero durations mean the defaults.
type WriterOptions struct {
	Dynamic dynamic.Interface
	// Core reads the Node (its UID, for the ownerReference).
	Core      CoreClient
	Namespace string
	Node      string
	// Source is the node's status now; false while the agent is not ready.
	Source func() (Status, bool)
	// Poll is how often Source is asked (default 1 s); Quiet how long a
	// change must stay before it is written (default 1 s); MinGap the
	// least time between two writes (default 2 s).
	Poll, Quiet, MinGap time.Duration
	Logger              *slog.Logger
}

// Writer keeps the node's VIPSpeakerNode saying what Source says.
type Writer struct {
	o WriterOptions
}

// NewWriter checks the options; it starts nothing.
func NewWriter(o WriterOptions) (*Writer, error) {
	if o.Dynamic == nil || o.Core == nil || o.Source == nil || o.Node == "" || o.Namespace == "" {
		return nil, fmt.Errorf("nodestate: writer needs clients, a node, a namespace and a source")
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Quiet <= 0 {
		o.Quiet = time.Second
	}
	if o.MinGap <= 0 {
		o.MinGap = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger = o.Logger.With("component", "nodestate")
	return &Writer{o: o}, nil
}

// Run writes until ctx ends. Errors (no CRD installed, API server away)
// are logged when they change and retried at the next change or MinGap.
func (w *Writer) Run(ctx context.Context) error {
	var (
		written   *Status // what the object says (nil: not read yet)
		pending   Status
		changedAt time.Time
		lastWrite time.Time
		lastErr   string
		retryAt   time.Time // after an error: no request before
		backoff   time.Duration
	)
	tick := time.NewTicker(w.o.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		st, ok := w.o.Source()
		if !ok || time.Now().Before(retryAt) {
			continue
		}
		// After an error (no CRD installed, API server away) the next
		// request waits MinGap, doubling up to a minute.
		fail := func(msg string, err error) {
			lastErr = w.logOnce(lastErr, msg, err)
			backoff = min(max(2*backoff, w.o.MinGap), time.Minute)
			retryAt = time.Now().Add(backoff)
		}
		if written == nil {
			cur, err := w.read(ctx)
			if err != nil {
				fail("cannot read this node's "+Kind, err)
				continue
			}
			written = cur
		}
		if written != nil && written.Uptodate(st) {
			changedAt = time.Time{}
			continue
		}
		now := time.Now()
		if changedAt.IsZero() || !pending.Same(st) {
			pending, changedAt = st, now
		}
		if now.Sub(changedAt) < w.o.Quiet || now.Sub(lastWrite) < w.o.MinGap {
			continue
		}
		var old Status
		if written != nil {
			old = *written
		}
		st.keepSince(old, metav1.NewTime(now.Truncate(time.Second)))
		st.Updated = metav1.NewTime(now.Truncate(time.Second))
		lastWrite = now
		if err := w.write(ctx, st, written != nil && written.exists); err != nil {
			fail("cannot write this node's "+Kind, err)
			written = nil // read again: it may exist after all
			continue
		}
		backoff = 0
		if lastErr != "" {
			w.o.Logger.Info(Kind+" written again", "node", w.o.Node)
		}
		lastErr = ""
		st.exists = true
		written, changedAt = &st, time.Time{}
	}
}

// Uptodate reports whether the object (s) says what st says.
func (s Status) Uptodate(st Status) bool { return s.exists && s.Same(st) }

func (w *Writer) logOnce(last, msg string, err error) string {
	if err.Error() != last {
		w.o.Logger.Warn(msg+"; retrying", "node", w.o.Node, "namespace", w.o.Namespace, "error", err)
	}
	return err.Error()
}

// read returns the object's status, exists false when there is none.
func (w *Writer) read(ctx context.Context) (*Status, error) {
	u, err := w.o.Dynamic.Resource(GVR).Namespace(w.o.Namespace).Get(ctx, w.o.Node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &Status{}, nil
	}
	if err != nil {
		return nil, err
	}
	o, err := FromUnstructured(u)
	if err != nil {
		// Rewritten whole at the next write.
		return &Status{exists: true}, nil
	}
	o.Status.exists = true
	return &o.Status, nil
}

// write creates the object or merge-patches its status (and its owner,
// should the Node have been re-created).
func (w *Writer) write(ctx context.Context, st Status, exists bool) error {
	sm, err := statusMap(st)
	if err != nil {
		return err
	}
	meta := map[string]any{
		"name": w.o.Node, "namespace": w.o.Namespace,
		"labels": map[string]any{"app.kubernetes.io/managed-by": "vipspeaker"},
	}
	n, err := w.o.Core.CoreV1().Nodes().Get(ctx, w.o.Node, metav1.GetOptions{})
	switch {
	case err == nil:
		meta["ownerReferences"] = []any{map[string]any{
			"apiVersion": "v1", "kind": "Node", "name": n.Name, "uid": string(n.UID),
		}}
	case !exists:
		// No Node, no report: an object without its owner would outlive
		// the node.
		return fmt.Errorf("read Node %s for the owner reference: %w", w.o.Node, err)
	}
	res := w.o.Dynamic.Resource(GVR).Namespace(w.o.Namespace)
	if !exists {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": Group + "/" + Version, "kind": Kind, "metadata": meta, "status": sm,
		}}
		_, err := res.Create(ctx, u, metav1.CreateOptions{FieldManager: "vipspeaker"})
		if err == nil || !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	delete(meta, "name")
	delete(meta, "namespace")
	p, err := json.Marshal(map[string]any{"metadata": meta, "status": sm})
	if err != nil {
		return err
	}
	_, err = res.Patch(ctx, w.o.Node, types.MergePatchType, p, metav1.PatchOptions{FieldManager: "vipspeaker"})
	return err
}

// CoreClient is the one API group the node state reads (a Clientset, or
// the agent's narrower clients, satisfies it).
type CoreClient interface {
	CoreV1() corev1client.CoreV1Interface
}

// coreOnly is a CoreClient from a core/v1 client alone.
type coreOnly struct{ corev1client.CoreV1Interface }

func (c coreOnly) CoreV1() corev1client.CoreV1Interface { return c.CoreV1Interface }
