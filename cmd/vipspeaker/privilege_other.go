//go:build !linux

package main

import "log/slog"

// checkPrivileges checks nothing outside Linux.
func checkPrivileges(*slog.Logger) error { return nil }
