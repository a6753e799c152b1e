package logging

import (
	"bytes"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	var b bytes.Buffer
	log, err := New(&b, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", "v")
	if s := b.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"msg":"shown"`) {
		t.Errorf("output %q", s)
	}
	for _, tc := range [][2]string{{"loud", "text"}, {"info", "xml"}} {
		if _, err := New(&b, tc[0], tc[1]); err == nil || !strings.Contains(err.Error(), "--log-") {
			t.Errorf("New(%q, %q) err = %v, want one naming the flag", tc[0], tc[1], err)
		}
	}
}
