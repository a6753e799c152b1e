package standalone

import (
	"fmt"
	"strings"
)

// Error is one problem of the manifest directory.
type Error struct {
	File    string // path of the file (the directory for directory errors)
	Doc     int    // 1-based document index in the file; 0: the whole file
	DocLine int    // line where the document starts; 0 when Doc is 0
	Line    int    // line of the problem when found, else DocLine
	Service string // "namespace/name" when known
	Field   string // e.g. `metadata.annotations["vipspeaker.io/addresses"]`
	Msg     string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Doc > 0 {
		fmt.Fprintf(&b, ": document %d", e.Doc)
		if e.DocLine > 0 && e.DocLine != e.Line {
			fmt.Fprintf(&b, " (from line %d)", e.DocLine)
		}
	}
	if e.Service != "" {
		b.WriteString(": service " + e.Service)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}
