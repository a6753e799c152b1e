package bgp

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestGoBGPLoggerUsesOurKeys(t *testing.T) {
	var buf bytes.Buffer
	l := newGoBGPLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	l.With(slog.String("Key", "198.18.0.1")).Info("Peer Up", slog.String("Topic", "Peer"))
	l.Info("Add PeerGroup", slog.String("Key", "tor"))
	out := buf.String()
	for _, want := range []string{"component=gobgp", "peer=198.18.0.1", "Key=tor"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
