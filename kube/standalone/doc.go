// Package standalone is vipspeaker's source of desired VIPs without a
// cluster: a directory of Kubernetes Service manifests (`vipspeaker run
// --services-dir DIR`). It reads the directory, turns the Services into
// []routing.VIP and, in Run, watches the directory and hands every changed
// set to a callback (in the agent: routing's Set).
//
// What is read:
//
//   - Files ending in .yaml, .yml or .json directly in the directory (not in
//     sub-directories); names starting with "." are ignored, which also hides
//     the "..data" directory of a mounted ConfigMap (its files are reached
//     through the symlinks next to it). A file may hold several YAML
//     documents separated by "---" lines; a document may also be a v1 List
//     (what `kubectl get svc -o yaml` writes). Blank documents are not
//     counted.
//   - Only `apiVersion: v1, kind: Service` documents with `spec.type:
//     LoadBalancer` are used. Other Services are skipped with an info log;
//     other kinds with a debug log. A Service with a loadBalancerClass other
//     than vipspeaker.io/lb is skipped (info); one with no class is taken, as
//     the files were written for vipspeaker.
//
// A Service's VIPs are the first present of: the vipspeaker.io/addresses
// annotation, MetalLB's metallb.io/loadBalancerIPs, OpenELB's
// eip.openelb.kubesphere.io/v1alpha1, spec.loadBalancerIP (deprecated, still
// common in old manifests), and status.loadBalancer.ingress[].ip. Lists are
// separated by commas (spaces allowed). An address must be a unicast IP:
// unspecified, loopback, multicast, link-local, the limited broadcast
// address, IPv4-mapped IPv6, zones and CIDRs are rejected.
//
// Attributes: Service is "namespace/name" (namespace "default" when
// absent). Mode comes from vipspeaker.io/mode, else OpenELB's
// protocol.openelb.kubesphere.io/v1alpha1 ("bgp" or "layer2"; empty when
// neither is set). vipspeaker.io/communities lists standard communities
// "65000:100" (two 16-bit numbers), large ones "large:65000:1:2" (three
// 32-bit numbers) and the well-known names no-export, no-advertise,
// no-export-subconfed (alias local-as), no-peer, blackhole and
// graceful-shutdown, which are written out as their numeric values
// (no-export is "65535:65281"), so that the bgp side sees one spelling.
// Communities are sorted numerically and deduplicated.
//
// Two Services wanting one address give one VIP: Attrs.Service lists both,
// sorted and comma separated, and their communities are merged. If their
// modes differ, the mode of the Service first in name order wins and the
// conflict is reported as an error.
//
// Bad input never removes a VIP that was good:
//
//   - Every problem is an *Error naming file, document (1-based) and its
//     start line, the line of the field when it can be found, the Service
//     and the field. It is skipped; everything else applies.
//   - An invalid address is skipped; the Service's other addresses apply.
//     An invalid mode or community makes the whole Service unusable (there
//     is no safe guess for how to announce it).
//   - A Service that had a fully valid read before and now has any invalid
//     field keeps its last good VIPs and attributes unchanged, and a warning
//     says so, until it is fixed or deleted.
//   - A file that cannot be read, or holds a document that cannot be decoded
//     (a YAML syntax error, a wrong type), keeps every Service it produced at
//     its last clean read; its good documents still apply their changes.
//     Deleting the file removes its Services.
//   - A missing directory is "no information", not "no Services": Load
//     returns the last result with an error, and Run applies nothing until
//     the directory exists (it polls for it).
//
// The keep-last-good state lives in the Source, so it starts empty at
// process start.
//
// From the kernel it needs inotify (through fsnotify) for Run.
package standalone
