package bgp

import (
	"context"
	"log/slog"
	"net/netip"
)

// gobgpHandler passes GoBGP's log records on to ours, renaming GoBGP's
// "Key" attribute to our stable "peer" key when it holds an address. GoBGP
// v4 logs through log/slog and has no Fatal level: nothing it logs can end
// the process.
type gobgpHandler struct{ next slog.Handler }

func newGoBGPLogger(l *slog.Logger) *slog.Logger {
	return slog.New(gobgpHandler{next: l.With("component", "gobgp").Handler()})
}

func (h gobgpHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func renameAttr(a slog.Attr) slog.Attr {
	if a.Key == "Key" {
		if _, err := netip.ParseAddr(a.Value.String()); err == nil {
			return slog.Attr{Key: "peer", Value: a.Value}
		}
	}
	return a
}

func (h gobgpHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(renameAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h gobgpHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = renameAttr(a)
	}
	return gobgpHandler{next: h.next.WithAttrs(out)}
}

func (h gobgpHandler) WithGroup(name string) slog.Handler {
	return gobgpHandler{next: h.next.WithGroup(name)}
}

// quietHandler drops the error GoBGP logs when Stop follows our own StopBgp.
type quietHandler struct {
	s    *Server
	next slog.Handler
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.s.quiet.Load() && r.Message == "failed to stop BGP server" {
		return nil
	}
	h.s.noteZebraLog(r)
	return h.next.Handle(ctx, r)
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{s: h.s, next: h.next.WithAttrs(as)}
}

func (h quietHandler) WithGroup(n string) slog.Handler {
	return quietHandler{s: h.s, next: h.next.WithGroup(n)}
}
