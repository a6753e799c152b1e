package bgp

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// readPassword resolves an auth-password: an absolute path names a file (a
// mounted Secret) holding the password; secret:NAME/KEY names a Kubernetes
// Secret, which only the agent in cluster mode reads (it replaces the
// reference before the file gets here, see ResolvePasswordRefs); anything
// else is the password.
func readPassword(pw string) (secret, file string, err error) {
	if strings.HasPrefix(pw, secretRefPrefix) {
		return "", "", fmt.Errorf("%q names a Kubernetes Secret: only the agent in cluster mode reads it (through the API server); here give the password or the absolute path of a file holding it", pw)
	}
	if !strings.HasPrefix(pw, "/") {
		return pw, "", nil
	}
	b, err := os.ReadFile(pw)
	if err != nil {
		return "", "", fmt.Errorf("read password file: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", "", fmt.Errorf("password file %s is empty", pw)
	}
	if len(s) > 80 {
		return "", "", fmt.Errorf("password in %s is longer than the 80 bytes TCP MD5 allows", pw)
	}
	return s, pw, nil
}

// secretRefPrefix starts an auth-password naming a key of a Kubernetes
// Secret in the agent's namespace: secret:NAME/KEY (config.ParseSecretRef
// reads the same form in vipspeaker.toml).
const secretRefPrefix = "secret:"

var (
	// passwordRefRE finds auth-password = "secret:..." (or '...') on a line.
	passwordRefRE = regexp.MustCompile(`(auth-password[ \t]*=[ \t]*)(?:"secret:([^"\\]*)"|'secret:([^']*)')`)
	secretNameRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	secretKeyRE   = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
)

// ResolvePasswordRefs replaces every auth-password = "secret:NAME/KEY" of a
// gobgp.conf (file names it in messages) with the value resolve returns for
// that Secret and key, quoted for TOML, so every line keeps its number. The
// errors (a malformed reference, what resolve returned) are *ConfigError at
// the reference's line; they never hold a value. Cluster mode resolves
// through the API server; Validate with a stand-in, since offline nothing
// can be read.
func ResolvePasswordRefs(file string, data []byte, resolve func(name, key string) (string, error)) ([]byte, []error) {
	if !bytes.Contains(data, []byte(secretRefPrefix)) {
		return data, nil
	}
	var errs []error
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, line := range lines {
		if !bytes.Contains(line, []byte(secretRefPrefix)) {
			continue
		}
		lines[i] = passwordRefRE.ReplaceAllFunc(line, func(m []byte) []byte {
			sub := passwordRefRE.FindSubmatch(m)
			ref := string(sub[2])
			if len(sub[3]) > 0 {
				ref = string(sub[3])
			}
			name, key, ok := strings.Cut(ref, "/")
			if !ok || len(name) > 253 || !secretNameRE.MatchString(name) || len(key) > 253 || !secretKeyRE.MatchString(key) {
				errs = append(errs, &ConfigError{File: file, Line: i + 1, Msg: fmt.Sprintf("auth-password: %q: want secret:NAME/KEY (a Secret of the agent's namespace and one of its keys)", secretRefPrefix+ref)})
				return m
			}
			v, err := resolve(name, key)
			if err == nil && v == "" {
				err = errors.New("the value is empty")
			}
			if err == nil && len(v) > 80 {
				err = errors.New("the value is longer than the 80 bytes TCP MD5 allows")
			}
			if err != nil {
				errs = append(errs, &ConfigError{File: file, Line: i + 1, Msg: fmt.Sprintf("auth-password: %s%s: %v", secretRefPrefix, ref, err)})
				return m
			}
			return append(slices.Clone(sub[1]), tomlQuote(v)...)
		})
	}
	if len(errs) > 0 {
		return data, errs
	}
	return bytes.Join(lines, nil), nil
}

// tomlQuote writes s as a TOML basic string.
func tomlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
