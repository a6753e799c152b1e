package main

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/health"
)

// newControlPlaneCheck builds the [control-plane] VIP's health check (nil
// without the section).
func newControlPlaneCheck(cfg *config.Config, f *runFlags, log *slog.Logger, reg prometheus.Registerer) (*health.Checker, error) {
	cp := cfg.ControlPlane
	if cp == nil {
		return nil, nil
	}
	if !f.standalone() {
		return nil, errors.New("[control-plane] needs standalone mode (no --kubeconfig): the control-plane VIP must not depend on the API server it fronts")
	}
	hc := cp.Check
	return health.New(health.Options{Name: config.ControlPlanePool, URL: hc.URL, TCP: hc.TCP,
		CAFile: hc.CAFile, ServerName: hc.ServerName, CertFile: hc.CertFile, KeyFile: hc.KeyFile, Interval: hc.Interval, Timeout: hc.Timeout,
		Rise: hc.Rise, Fall: hc.Fall, Logger: log, Registerer: reg})
}
