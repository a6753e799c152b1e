// Package check is `vipspeaker check`: a config directory or a ConfigMap
// manifest validated offline with the code the running agent uses (config
// for vipspeaker.toml, bgp for gobgp.conf), each problem reported as
// `file:line: problem`, with line numbers pointing into the manifest.
package check
