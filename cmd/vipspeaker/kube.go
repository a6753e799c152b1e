package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/kube"
)

// configMapName names a key of the ConfigMap in messages.
func (a *agent) configMapName(key string) string {
	ns := a.f.namespace
	if ns == "" {
		ns = kube.DefaultNamespace
	}
	return ns + "/" + kube.DefaultConfigMapName + "/" + key
}

// cluster is the cluster-mode state of an agent.
type cluster struct {
	ctrl *kube.Controller
	// memberKey is the layer2 membership key derived from the Secret that
	// [membership] secret-file names (secret:NAME/KEY) at start; nil
	// otherwise.
	memberKey []byte
	// joinFromAPI: [membership] join was empty at start, so the layer2
	// membership joins the other nodes' InternalIPs (kube_peers.go).
	joinFromAPI bool
	// family of the membership's address (the first layer2 interface's).
	joinV6 bool
}

// newKube builds the cluster-mode controller: the ConfigMap feeds the
// config (validated as in standalone mode; a bad one is refused whole and
// the last good stays), the Services feed the VIPs.
func (a *agent) newKube() (*kube.Controller, error) {
	ctrl, err := a.newKubeController()
	if err != nil {
		return nil, err
	}
	a.cluster.ctrl = ctrl
	return ctrl, nil
}

func (a *agent) newKubeController() (*kube.Controller, error) {
	return kube.New(kube.Options{
		Kubeconfig:    a.f.kubeconfig,
		NodeName:      a.f.nodeName,
		Namespace:     a.f.namespace,
		LeaseDuration: a.f.leaseDuration,
		Logger:        a.log,
		Registerer:    a.reg,
		OnConfig: func(vipspeakerTOML, gobgpConf []byte) error {
			return a.clusterConfig(context.Background(), vipspeakerTOML, gobgpConf, false)
		},
		OnConfigRejected: func(err error) {
			a.metrics.reloaded(false)
			a.cfgState.refused(err)
		},
		OnLayer2: func(candidates map[netip.Addr][]string) {
			if a.l2 != nil {
				a.l2.setEligible(candidates)
			}
		},
		OnNodeAddrs: a.nodeAddrsChanged,
	})
}

// clusterConfig applies the ConfigMap's two keys. vipspeaker.toml absent
// means defaults; gobgp.conf absent leaves BGP as it is.
func (a *agent) clusterConfig(ctx context.Context, vipspeakerTOML, gobgpConf []byte, initial bool) error {
	c := config.Default()
	if vipspeakerTOML != nil {
		var errs []error
		c, errs = config.Parse(a.configMapName(config.FileName), vipspeakerTOML)
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		if errs := config.CheckWithGoBGP(a.configMapName(config.FileName), vipspeakerTOML, c, a.configMapName(kube.GoBGPConfKey), gobgpConf); len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	// Secrets named by the ConfigMap (secret:NAME/KEY): every reference is
	// read before anything is applied; one that cannot be read refuses
	// the whole ConfigMap.
	key, err := a.membershipKey(ctx, c)
	if err != nil {
		return err
	}
	if gobgpConf != nil {
		var errs []error
		if gobgpConf, errs = a.resolveBGPSecrets(ctx, gobgpConf); len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	if initial {
		a.cluster.memberKey = key
		if err := a.initialPeers(ctx, c); err != nil {
			return err
		}
	} else if !bytes.Equal(key, a.cluster.memberKey) {
		a.log.Warn("the layer2 membership key changed; it takes effect when the agent restarts (restart the DaemonSet)",
			"field", "membership.secret-file", "secret", c.Membership.SecretRef.String())
	}
	if gobgpConf != nil {
		if err := a.applyBGPData(ctx, a.configMapName(kube.GoBGPConfKey), gobgpConf, initial); err != nil {
			return err
		}
	}
	if initial {
		a.vipMu.Lock()
		a.cfg = c
		a.vipMu.Unlock()
	} else {
		a.setConfig(ctx, c)
		a.metrics.reloaded(true)
	}
	a.ready.set("config", true)
	return nil
}

// initialClusterConfig reads the ConfigMap once before anything starts, so
// the VIP interface, the layer2 parts and BGP start with it. An API server
// that cannot be reached leaves the defaults; the watch applies the
// ConfigMap when it arrives. An invalid ConfigMap at start stops the agent
// with every problem listed, as an invalid config directory does.
func (a *agent) initialClusterConfig(ctx context.Context, ctrl *kube.Controller) error {
	ns := a.f.namespace
	if ns == "" {
		ns = kube.DefaultNamespace
	}
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cm, err := ctrl.Client().CoreV1().ConfigMaps(ns).Get(gctx, kube.DefaultConfigMapName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		a.log.Info("no ConfigMap yet; starting with defaults", "configmap", ns+"/"+kube.DefaultConfigMapName)
		return nil
	case err != nil:
		a.log.Warn("cannot read the ConfigMap at start; starting with defaults, the watch applies it later", "error", err)
		return nil
	}
	var toml, gobgp []byte
	if v, ok := cm.Data[config.FileName]; ok {
		toml = []byte(v)
	}
	if v, ok := cm.Data[kube.GoBGPConfKey]; ok {
		gobgp = []byte(v)
	}
	if err := a.clusterConfig(ctx, toml, gobgp, true); err != nil {
		return fmt.Errorf("ConfigMap %s/%s is invalid; nothing was started:\n%w", ns, kube.DefaultConfigMapName, err)
	}
	return nil
}
