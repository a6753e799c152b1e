//go:build !linux

package dataplane

import "errors"

var errNotLinux = errors.New("layer2 responder needs Linux")

type sysctlChange struct{ Path string }

func (r *Responder) listenPort(name string) (*port, error) { return nil, errNotLinux }

func (r *Responder) recordSysctlsLocked(string, []sysctlChange) {}

func (r *Responder) restoreLocked(string) error { return nil }
