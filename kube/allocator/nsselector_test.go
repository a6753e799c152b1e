package allocator

import (
	"slices"
	"testing"
)

// Pools chosen by namespace labels: a Service may use a pool when its
// namespace is listed in namespaces or its Namespace's labels match
// namespace-selector; a Service naming such a pool from another namespace
// is refused with NamespaceNotAllowed; a namespace losing its label keeps
// the address already given.
func TestNamespaceSelector(t *testing.T) {
	a := New(pools(t, `
[[pools]]
name = "general"
addresses = ["198.51.100.0-198.51.100.3"]

[[pools]]
name = "team"
addresses = ["203.0.113.0-203.0.113.3"]
namespaces = ["listed"]
namespace-selector = "team=a"
priority = 1
`))
	inNS := func(ns string, nsLabels map[string]string) Request {
		return Request{Service: ns + "/web", Namespace: ns, NamespaceLabels: nsLabels}
	}
	labelled := inNS("labelled", map[string]string{"team": "a"})
	res := mustAssign(t, a, labelled)
	if res.Pool != "team" {
		t.Errorf("namespace labelled team=a got pool %q, want team", res.Pool)
	}
	if got := mustAssign(t, a, inNS("listed", nil)).Pool; got != "team" {
		t.Errorf("listed namespace without labels got pool %q, want team", got)
	}
	other := inNS("other", map[string]string{"team": "b"})
	if got := mustAssign(t, a, other).Pool; got != "general" {
		t.Errorf("namespace labelled team=b got pool %q, want general", got)
	}
	asks := inNS("plain", nil)
	asks.Pool = "team"
	_, err := a.Assign(asks)
	wantReason(t, err, ReasonNamespace)

	// The namespace loses its label: the Service keeps its address.
	labelled.NamespaceLabels, labelled.Current = nil, res.Addrs
	if again := mustAssign(t, a, labelled); !slices.Equal(again.Addrs, res.Addrs) || again.Pool != "team" {
		t.Errorf("after the namespace lost its label: %v from %q, want %v kept", again.Addrs, again.Pool, res.Addrs)
	}
}

// A pool with only a namespace-selector serves no namespace whose labels
// do not match (an empty namespaces list does not mean "all" then).
func TestNamespaceSelectorAlone(t *testing.T) {
	a := New(pools(t, `
[[pools]]
name = "team"
addresses = ["203.0.113.0-203.0.113.3"]
namespace-selector = "team"
`))
	_, err := a.Assign(Request{Service: "x/web", Namespace: "x"})
	wantReason(t, err, ReasonNoPool)
	r := Request{Service: "y/web", Namespace: "y", NamespaceLabels: map[string]string{"team": "z"}}
	if got := mustAssign(t, a, r).Pool; got != "team" {
		t.Errorf("namespace with a team label got pool %q, want team", got)
	}
}
