package kube

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// told is what this node last said about a Service in an Announcing Event.
type told struct {
	uid  types.UID
	desc string // "announces 203.0.113.1 (bgp)", the message after "node N "
	what string // "203.0.113.1 (bgp)", for the Withdrawn message
	// a is the announcement desc was made from (hasA false when seeded
	// from an Event): compared first, so an unchanged Service costs no
	// formatting.
	a    announcement
	hasA bool
}

func (a announcement) equal(b announcement) bool {
	return a.mode == b.mode && slices.Equal(a.addrs, b.addrs)
}

// Verbs of the Announcing message.
const (
	verbAnnounces = "announces"
	verbCandidate = "is a layer2 candidate for"
)

// seedTold reads this node's earlier Announcing and Withdrawn Events (still
// kept by the API server, an hour by default), so an agent that restarts
// with nothing changed does not say it again. Keyed by Service key; only
// Services whose latest Event of this node is Announcing.
func (c *Controller) seedTold(ctx context.Context) map[string]told {
	type latest struct {
		at      time.Time
		rv      int64
		reason  string
		uid     types.UID
		message string
	}
	byKey := map[string]latest{}
	prefix := "node " + c.opts.NodeName + " "
	n := 0
	for _, reason := range []string{"Announcing", "Withdrawn"} {
		opts := metav1.ListOptions{FieldSelector: "source=vipspeaker,reason=" + reason, Limit: 500}
		for page := 0; page < 1000; page++ {
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			l, err := c.cs.CoreV1().Events("").List(lctx, opts)
			cancel()
			if err != nil {
				c.log.Warn("cannot read earlier Events: Announcing Events may repeat after this restart", "error", err)
				return map[string]told{}
			}
			for i := range l.Items {
				ev := &l.Items[i]
				if ev.Source.Host != c.opts.NodeName || ev.InvolvedObject.Kind != "Service" || !strings.HasPrefix(ev.Message, prefix) {
					continue
				}
				n++
				at := ev.LastTimestamp.Time
				if at.IsZero() {
					at = ev.EventTime.Time
				}
				if at.IsZero() {
					at = ev.CreationTimestamp.Time
				}
				rv, _ := strconv.ParseInt(ev.ResourceVersion, 10, 64)
				k := ev.InvolvedObject.Namespace + "/" + ev.InvolvedObject.Name
				if old, ok := byKey[k]; ok && (old.at.After(at) || (old.at.Equal(at) && old.rv > rv)) {
					continue
				}
				byKey[k] = latest{at: at, rv: rv, reason: reason, uid: ev.InvolvedObject.UID, message: ev.Message}
			}
			if l.Continue == "" {
				break
			}
			opts.Continue = l.Continue
		}
	}
	out := map[string]told{}
	for k, l := range byKey {
		if l.reason != "Announcing" {
			continue
		}
		desc := strings.TrimPrefix(l.message, prefix)
		what := desc
		for _, v := range []string{verbAnnounces, verbCandidate} {
			if rest, ok := strings.CutPrefix(desc, v+" "); ok {
				what = rest
			}
		}
		out[k] = told{uid: l.uid, desc: desc, what: what}
	}
	c.log.Info("read this node's earlier announcement Events", "events", n, "services", len(out))
	return out
}

// nodeAddrs maps each Node to its InternalIP addresses.
func nodeAddrs(nodes []*corev1.Node) map[string][]string {
	out := make(map[string][]string, len(nodes))
	for _, n := range nodes {
		var as []string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && a.Address != "" {
				as = append(as, a.Address)
			}
		}
		out[n.Name] = as
	}
	return out
}
