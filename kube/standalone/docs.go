package standalone

import (
	"bytes"
	"regexp"
	"strconv"
)

// document is one YAML document of a file.
type document struct {
	index     int    // 1-based, blank documents not counted
	startLine int    // first line with content
	baseLine  int    // line of data[0] in the file
	data      []byte // the document's text
}

// splitDocuments cuts a file at "---" lines. Text after "---" on the same
// line belongs to the next document. Blank documents (whitespace and
// comments only) are dropped and not counted.
func splitDocuments(data []byte) []document {
	var docs []document
	var cur []byte
	base := 1
	flush := func() {
		if start := firstContentLine(cur); start > 0 {
			docs = append(docs, document{
				index:     len(docs) + 1,
				startLine: base + start - 1,
				baseLine:  base,
				data:      cur,
			})
		}
	}
	line := 1
	for len(data) > 0 {
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i+1], data[i+1:]
		} else {
			l, data = data, nil
		}
		if isSeparator(l) {
			flush()
			rest := bytes.TrimLeft(l[3:], " \t")
			cur = append([]byte(nil), rest...)
			base = line
			if len(bytes.TrimSpace(rest)) == 0 {
				cur = nil
				base = line + 1
			}
		} else {
			cur = append(cur, l...)
		}
		line++
	}
	flush()
	return docs
}

func isSeparator(l []byte) bool {
	if !bytes.HasPrefix(l, []byte("---")) {
		return false
	}
	rest := l[3:]
	return len(bytes.TrimSpace(rest)) == 0 || rest[0] == ' ' || rest[0] == '\t'
}

// firstContentLine is the 1-based line of the first line that is neither
// blank nor a comment; 0 if there is none.
func firstContentLine(data []byte) int {
	n := 1
	for len(data) > 0 {
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			l, data = data, nil
		}
		t := bytes.TrimSpace(l)
		if len(t) > 0 && t[0] != '#' {
			return n
		}
		n++
	}
	return 0
}

var yamlLineRE = regexp.MustCompile(`yaml: line (\d+):`)

// fileLine turns a YAML error's line (counted from the document's first
// line) into a line of the file. It returns the rewritten message and that
// line (0 when the message has none).
func (d document) fileLine(msg string) (string, int) {
	found := 0
	msg = yamlLineRE.ReplaceAllStringFunc(msg, func(m string) string {
		n, err := strconv.Atoi(yamlLineRE.FindStringSubmatch(m)[1])
		if err != nil {
			return m
		}
		found = d.baseLine + n - 1
		return "yaml: line " + strconv.Itoa(found) + ":"
	})
	return msg, found
}

// lineOf is the file line of the first line of the document containing
// needle, or the document's start line.
func (d document) lineOf(needles ...string) int {
	for _, needle := range needles {
		if needle == "" {
			continue
		}
		if i := bytes.Index(d.data, []byte(needle)); i >= 0 {
			return d.baseLine + bytes.Count(d.data[:i], []byte("\n"))
		}
	}
	return d.startLine
}
